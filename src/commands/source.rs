//! Reading `.cam` files (`camc_runtime::program::read_source`), the error printed.

use crate::output;
use crate::Reported;
use std::path::Path;

pub fn read(path: &Path) -> Result<String, Reported> {
    camc_runtime::program::read_source(path).map_err(|message| {
        output::error(&message);
        Reported
    })
}

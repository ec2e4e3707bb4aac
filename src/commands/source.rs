//! Reading `.cam` files: a clear error for missing files and text that is not UTF-8.

use crate::output;
use crate::Reported;
use std::path::Path;

pub fn read(path: &Path) -> Result<String, Reported> {
    let bytes = std::fs::read(path).map_err(|e| {
        output::error(&format!("cannot read `{}`: {e}", path.display()));
        Reported
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        output::error(&format!(
            "`{}` is not a text file: invalid UTF-8 at byte {at}",
            path.display()
        ));
        Reported
    })
}

//! Running the `camc` binary from a test.

use std::process::{Command, Output};

/// `camc ARGS...`, waited for.
pub fn camc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camc"))
        .args(args)
        .output()
        .expect("camc runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

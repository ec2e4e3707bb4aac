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

/// `camc ARGS...` with stderr captured, killed if it runs longer than `limit`: `None` then
/// (a hang).
pub fn camc_within(args: &[&str], limit: std::time::Duration) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_camc"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("camc starts");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    Some(child.wait_with_output().expect("output"))
}

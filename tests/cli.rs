//! The `camc` command line: exit codes (0 ok, 1 diagnosed error, 2 usage) and output streams.

mod support;

use std::process::{Command, Output};

fn camc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camc"))
        .args(args)
        .current_dir(support::root())
        .output()
        .expect("camc runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file in its own temporary directory, removed with it when dropped.
struct TempFile {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

fn temp_file(name: &str, bytes: &[u8]) -> TempFile {
    let dir = support::caches::temp_dir();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    TempFile { _dir: dir, path }
}

#[test]
fn check_accepts_good_programs_and_prints_signatures() {
    let file = temp_file(
        "ok.cam",
        b"cam g(A: [k,h,w], G: [k,h,w], eps: [] = 1e-6) = relu(sum[k](mean[h,w](G) * A)) + eps\n",
    );
    let out = camc(&["check", support::caches::path_str(&file.path)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("cam g(A: [k,h,w], G: [k,h,w], eps: [] = 1e-6) -> [h,w]"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).is_empty());
}

#[test]
fn check_reports_errors_plainly_with_exit_1() {
    let file = temp_file(
        "bad.cam",
        b"cam g(A: [k,h,w]) = sum[h,w](A)\ncam h(A: [k,h,w]) = relu(B)\n",
    );
    let out = camc(&["check", support::caches::path_str(&file.path)]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("result has axes [k]; a CAM must be [h,w]"), "{err}");
    assert!(
        err.contains("unknown name `B`"),
        "both errors are reported: {err}"
    );
    assert!(err.contains("has 2 errors"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "no colour when stderr is not a terminal: {err}"
    );
}

#[test]
fn unreadable_and_non_text_files_are_errors_not_panics() {
    let out = camc(&["check", "does/not/exist.cam"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read `does/not/exist.cam`"),
        "{}",
        stderr(&out)
    );
    let file = temp_file("binary.cam", &[0x63, 0x61, 0x6d, 0xff, 0xfe, 0x00]);
    let out = camc(&["check", support::caches::path_str(&file.path)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid UTF-8 at byte 3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(camc(&[]).status.code(), Some(2));
    assert_eq!(camc(&["check"]).status.code(), Some(2));
    assert_eq!(camc(&["check", "--no-such-flag", "x.cam"]).status.code(), Some(2));
    assert_eq!(camc(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn stdlib_lists_and_prints_methods() {
    let out = camc(&["stdlib"]);
    assert_eq!(out.status.code(), Some(0));
    let listing = stdout(&out);
    for name in camc_compiler::stdlib::names() {
        assert!(
            listing.lines().any(|l| l.starts_with(name)),
            "{name} missing from:\n{listing}"
        );
    }
    let out = camc(&["stdlib", "gradcam"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        camc_compiler::stdlib::source("gradcam").expect("gradcam exists")
    );
    let out = camc(&["stdlib", "gradcm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("did you mean `gradcam`?"),
        "{}",
        stderr(&out)
    );
}

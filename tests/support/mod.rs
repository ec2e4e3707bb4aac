//! Shared helpers for the integration tests: snapshot files under tests/out, blessed with
//! `CAMC_BLESS=1 cargo test`.
#![allow(dead_code)]

pub mod caches;
pub mod cli;
pub mod gen;
pub mod golden;
pub mod gradients;

use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.cam` files of a folder under tests/in, sorted.
pub fn inputs(folder: &str) -> Vec<PathBuf> {
    let dir = root().join("tests/in").join(folder);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "cam"))
        .collect();
    files.sort();
    files
}

pub fn stem(path: &Path) -> String {
    path.file_stem()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

pub fn blessing() -> bool {
    std::env::var_os("CAMC_BLESS").is_some_and(|v| v != "0")
}

/// Compares `actual` with the snapshot at tests/out/`relative`, or rewrites it when blessing.
/// Returns a description of the mismatch.
pub fn snapshot(relative: &str, actual: &str) -> Result<(), String> {
    let path = root().join("tests/out").join(relative);
    if blessing() {
        std::fs::create_dir_all(path.parent().expect("snapshot has a folder"))
            .expect("create snapshot folder");
        std::fs::write(&path, actual).expect("write snapshot");
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path)
        .map_err(|_| format!("{relative}: no snapshot (run with CAMC_BLESS=1 to create it)"))?;
    if expected == actual {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
        .unified_diff()
        .header("expected", "actual")
        .to_string();
    Err(format!("{relative} differs:\n{diff}"))
}

/// Panics with every failure at once, so one run shows all that is wrong.
pub fn report(failures: Vec<String>) {
    if !failures.is_empty() {
        panic!("{} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
    }
}

/// The kernel of the last `cam` of `source`, compiled with default knobs at `level`; panics
/// with the rendered diagnostics when the source does not check.
pub fn kernel(source: &str, level: Level) -> Kernel {
    let checked = camc_compiler::check_source("test.cam", source);
    let program = checked
        .program
        .as_ref()
        .unwrap_or_else(|| panic!("{}", checked.render(false)));
    let root = program.cams().last().expect("a cam");
    camc_compiler::compile_kernel(program, root, &HashMap::new(), level).expect("compiles")
}

/// The stdlib method `name` compiled at `level`.
pub fn stdlib_kernel(name: &str, level: Level) -> Kernel {
    let checked = camc_compiler::check_stdlib(name).expect("listed");
    let program = checked.program.as_ref().expect("stdlib checks");
    let root = program.exported(name).expect("file defines its method");
    camc_compiler::compile_kernel(program, root, &HashMap::new(), level).expect("compiles")
}

/// Runs a batch through an executor built for [`camc_runtime::exec::Outputs::untouched`] (or
/// `raw`) into `out`: every image's raw map, image-major.
pub fn run_raw(
    executor: &mut dyn camc_runtime::exec::Executor,
    batch: &camc_runtime::batch::Batch<'_>,
    out: &mut [f32],
) -> Result<(), camc_runtime::exec::ExecError> {
    executor.run_into(batch, out, &mut [], &mut vec![0; batch.n])
}

/// One image's raw map (sanitized in place) post-processed to `size` on the host: the map and
/// the count of non-finite values.
pub fn host_processed(raw: &mut [f32], shape: &[usize], size: &[usize]) -> (Vec<f32>, usize) {
    let outputs = camc_runtime::exec::Outputs::processed(size.to_vec());
    let mut processed = Vec::new();
    let bad = camc_runtime::postprocess::host_maps(raw, shape, &outputs, &mut processed).nonfinite;
    (processed, bad)
}

/// The kernel of `source` with its input `name` made shared by all images after compiling (as
/// declaring it `shared` does), and that input's index.
pub fn kernel_sharing(source: &str, name: &str) -> (Kernel, usize) {
    let mut kernel = kernel(source, Level::Exact);
    let index = kernel
        .inputs
        .iter()
        .position(|i| i.name == name)
        .unwrap_or_else(|| panic!("the kernel reads no `{name}`"));
    kernel.inputs[index].kind = camc_compiler::ir::InputKind::Shared;
    (kernel, index)
}

/// How many copies of an input a batch of `n` images holds: `n`, or 1 when it is shared.
pub fn copies(input: &camc_compiler::ir::Input, n: usize) -> usize {
    match input.kind {
        camc_compiler::ir::InputKind::PerImage => n,
        camc_compiler::ir::InputKind::Shared => 1,
    }
}

/// A per-image class index (`target`) for `n` images: whole numbers in `[0, classes)`.
pub fn class_indices(n: usize, classes: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed)) % classes.max(1) as u64) as f32)
        .collect()
}

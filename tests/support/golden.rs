//! The golden outputs of tests/golden (computed by an independent numpy script and checked
//! against pytorch-grad-cam): every stdlib method, run on each golden cache by an executor,
//! raw and post-processed, compared with the expected tensors.

use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use camc_runtime::cache::{Binding, Cache};
use camc_runtime::exec::{Executor, Outputs};
use camc_runtime::run::Run;
use std::collections::HashMap;

pub const CASES: [(&str, &str); 3] = [
    ("cache.safetensors", "expected.safetensors"),
    ("cache_k1.safetensors", "expected_k1.safetensors"),
    ("cache_hw1.safetensors", "expected_hw1.safetensors"),
];

/// Every image's raw and processed maps (each empty where `executor` does not compute it).
fn run_all(binding: &Binding, executor: &mut dyn Executor) -> (Vec<f32>, Vec<f32>) {
    let (mut raw, mut processed) = (Vec::new(), Vec::new());
    let job = Run {
        binding,
        batch: 3,
        strict: false,
    };
    job.execute_in_order(
        executor,
        |_, r, p| {
            raw.extend_from_slice(r);
            processed.extend_from_slice(p);
            Ok(())
        },
        |_| {},
    )
    .expect("runs");
    (raw, processed)
}

/// Largest |a - e| / (|e| + 1) over the values, and where; `(0, 0)` when equal.
fn worst(actual: &[f32], expected: &[f32]) -> (f32, usize) {
    actual
        .iter()
        .zip(expected)
        .enumerate()
        .map(|(i, (a, e))| ((a - e).abs() / (e.abs() + 1.0), i))
        .fold((0.0, 0), |best, x| if x.0 > best.0 { x } else { best })
}

/// Runs every stdlib method on every golden cache with executors from `make`; returns the
/// failures (empty when all agree: raw within `raw_tol`, heatmaps within `heatmap_tol`,
/// relative to |expected| + 1).
pub fn check(
    make: &dyn Fn(&Kernel, Dims, Outputs) -> Box<dyn Executor>,
    raw_tol: f32,
    heatmap_tol: f32,
) -> Vec<String> {
    let dir = super::root().join("tests/golden");
    let mut failures = Vec::new();
    for (cache_file, expected_file) in CASES {
        let cache = Cache::open(dir.join(cache_file).to_str().expect("utf-8")).expect("golden cache opens");
        let expected = Cache::open(dir.join(expected_file).to_str().expect("utf-8")).expect("expected opens");
        let size = cache
            .image_size()
            .expect("image_size")
            .expect("golden caches have image_size");
        // Recipro-CAM and Opti-CAM are not in pytorch-grad-cam: their goldens are the official
        // algorithms, run by python/tests/test_torch_recipro.py and test_torch_opticam.py.
        let official = |m: &&str| m.starts_with("reciprocam") || *m == "opticam";
        for method in camc_compiler::stdlib::names().filter(|m| !official(m)) {
            let checked = camc_compiler::check_stdlib(method).expect("stdlib method");
            let program = checked.program.as_ref().expect("stdlib checks");
            let root = program.exported(method).expect("method is exported");
            let kernel = camc_compiler::compile_kernel(program, root, &HashMap::new(), Level::Exact)
                .expect("compiles");
            let binding = Binding::new(&cache, &kernel).expect("golden cache has the method's inputs");
            let shape = Outputs::raw_shape(&kernel, binding.dims);
            // Raw maps alone, processed maps alone, and both from one run.
            for outputs in [
                Outputs::raw(),
                Outputs::processed(size.clone()),
                Outputs::both(size.clone()),
            ] {
                let mut executor = make(&kernel, binding.dims, outputs.clone());
                let (raw, processed) = run_all(&binding, executor.as_mut());
                let mut results = Vec::new();
                if outputs.raw {
                    results.push((raw, "raw", raw_tol));
                }
                if outputs.processed.is_some() {
                    results.push((processed, "heatmap", heatmap_tol));
                }
                for (actual, suffix, tol) in results {
                    let name = format!("{method}.{suffix}");
                    let (_, want) = expected.shards[0].f32(&name).expect("expected tensor");
                    if actual.len() != want.len() {
                        failures.push(format!(
                            "{cache_file} {name} {outputs:?}: {} values, expected {} (raw shape {shape:?})",
                            actual.len(),
                            want.len()
                        ));
                        continue;
                    }
                    let (error, at) = worst(&actual, &want);
                    if error > tol || actual.iter().any(|v| v.is_nan()) {
                        failures.push(format!(
                            "{cache_file} {name} {outputs:?} ({}): error {error:e} at {at}: {} vs expected {}",
                            executor.backend(),
                            actual[at],
                            want[at]
                        ));
                    }
                }
            }
        }
    }
    failures
}

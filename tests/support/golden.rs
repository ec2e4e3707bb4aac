//! The golden outputs of tests/golden (computed by an independent numpy script and checked
//! against pytorch-grad-cam): every stdlib method, run on each golden cache by an executor,
//! raw and post-processed, compared with the expected tensors.

use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use camc_runtime::cache::{Binding, Cache};
use camc_runtime::exec::Executor;
use camc_runtime::postprocess::Post;
use camc_runtime::run::{raw_shape, Run};
use camc_runtime::Dims;
use std::collections::HashMap;

pub const CASES: [(&str, &str); 3] = [
    ("cache.safetensors", "expected.safetensors"),
    ("cache_k1.safetensors", "expected_k1.safetensors"),
    ("cache_hw1.safetensors", "expected_hw1.safetensors"),
];

fn run_all(kernel: &Kernel, binding: &Binding, executor: &mut dyn Executor, post: Post) -> Vec<f32> {
    let mut all = Vec::new();
    let job = Run {
        kernel,
        binding,
        post,
        batch: 3,
        strict: false,
    };
    job.execute(
        executor,
        |_, v| {
            all.extend_from_slice(v);
            Ok(())
        },
        |_| {},
    )
    .expect("runs");
    all
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
    make: &dyn Fn(&Kernel, Dims) -> Box<dyn Executor>,
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
        for method in camc_compiler::stdlib::names() {
            let checked = camc_compiler::check_stdlib(method).expect("stdlib method");
            let program = checked.program.as_ref().expect("stdlib checks");
            let root = program.exported(method).expect("method is exported");
            let kernel = camc_compiler::compile_kernel(program, root, &HashMap::new(), Level::Exact)
                .expect("compiles");
            let binding = Binding::new(&cache, &kernel).expect("golden cache has the method's inputs");
            let shape = raw_shape(&kernel, &binding);
            for (post, suffix, tol) in [
                (Post::Raw, "raw", raw_tol),
                (Post::Scale { size: size.clone() }, "heatmap", heatmap_tol),
            ] {
                let mut executor = make(&kernel, binding.dims);
                let actual = run_all(&kernel, &binding, executor.as_mut(), post);
                let name = format!("{method}.{suffix}");
                let (_, want) = expected.shards[0].f32(&name).expect("expected tensor");
                if actual.len() != want.len() {
                    failures.push(format!(
                        "{cache_file} {name}: {} values, expected {} (raw shape {shape:?})",
                        actual.len(),
                        want.len()
                    ));
                    continue;
                }
                let (error, at) = worst(&actual, &want);
                if error > tol || actual.iter().any(|v| v.is_nan()) {
                    failures.push(format!(
                        "{cache_file} {name} ({}): error {error:e} at {at}: {} vs expected {}",
                        executor.backend(),
                        actual[at],
                        want[at]
                    ));
                }
            }
        }
    }
    failures
}

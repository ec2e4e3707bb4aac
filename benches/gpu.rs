//! The CUDA kernel on a ResNet-50-like cache held in memory (n = 256 images, k = 2048, 7×7,
//! random activations and gradients, f32 and f16): its achieved read bandwidth against a
//! device-to-device copy of the same bytes, its time against the CPU JIT on the same data, and
//! the compile times (NVRTC, then a repeat served by the on-disk kernel cache). Run with
//! `cargo bench --bench gpu` (set `CAMC_BENCH_IMAGES` to change n). Without a GPU it says so
//! and exits. It prints times and the ratios measured in this run; nothing is asserted.

use camc_compiler::codegen::cuda::Schedule;
use camc_compiler::dims::Dims;
use camc_compiler::dtype::Dtype;
use camc_compiler::opt::Level;
use camc_runtime::batch::{Batch, Data};
use camc_runtime::exec::cpu::CpuExecutor;
use camc_runtime::exec::cuda::ptx_store::PtxStore;
use camc_runtime::exec::cuda::{gpu_present, CudaExecutor};
use camc_runtime::exec::{Executor, Outputs};
use half::f16;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DIMS: Dims = Dims::new(2048, 1, 7, 7);

fn best(repeats: usize, mut f: impl FnMut()) -> Duration {
    (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn random(len: usize, seed: u64, non_negative: bool) -> Vec<f32> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if non_negative {
                v.max(0.0)
            } else {
                v
            }
        })
        .collect()
}

fn kernel(name: &str) -> camc_compiler::ir::Kernel {
    let checked = camc_compiler::check_stdlib(name).expect("a stdlib method");
    let program = checked.program.as_ref().expect("checks");
    let root = program.exported(name).expect("defined");
    camc_compiler::compile_kernel(program, root, &HashMap::new(), Level::Exact).expect("compiles")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    if !gpu_present() {
        println!("no CUDA driver or GPU on this machine: the GPU benchmark did not run");
        return;
    }
    let n: usize = std::env::var("CAMC_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let per_image = DIMS.k * DIMS.h * DIMS.w;
    let a = random(n * per_image, 1, true);
    let g = random(n * per_image, 2, false);
    let a16: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
    let g16: Vec<f16> = g.iter().map(|&x| f16::from_f32(x)).collect();
    let cache_dir = std::env::temp_dir().join(format!("camc-gpu-bench-{}", std::process::id()));
    println!(
        "n={n} k={} {}x{}, CPU JIT on {} threads",
        DIMS.k,
        DIMS.h,
        DIMS.w,
        rayon::current_num_threads()
    );
    let mut rows = Vec::new();
    for name in ["gradcam", "gradcampp", "xgradcam", "layercam"] {
        let kernel = kernel(name);
        for dtype in [Dtype::F32, Dtype::F16] {
            let data: Vec<Data> = kernel
                .inputs
                .iter()
                .map(|i| match (i.name == "A", dtype) {
                    (true, Dtype::F16) => Data::F16(&a16),
                    (false, Dtype::F16) => Data::F16(&g16),
                    (true, _) => Data::F32(&a),
                    (false, _) => Data::F32(&g),
                })
                .collect();
            let batch = Batch {
                files: Vec::new(),
                n,
                inputs: data,
            };
            let dtypes = vec![dtype; kernel.inputs.len()];

            // First use: NVRTC; then a new cache on the same folder: the disk, no NVRTC.
            let _ = std::fs::remove_dir_all(&cache_dir);
            let fresh = Arc::new(PtxStore::new(Some(cache_dir.clone())));
            let mut gpu = CudaExecutor::new(&kernel, DIMS, Outputs::untouched())
                .expect("opens the GPU")
                .with_ptx_store(fresh);
            let start = Instant::now();
            let origin = gpu.prepare(&dtypes).expect("compiles");
            let compile = start.elapsed();
            let on_disk = Arc::new(PtxStore::new(Some(cache_dir.clone())));
            let mut repeat = CudaExecutor::new(&kernel, DIMS, Outputs::untouched())
                .expect("opens the GPU")
                .with_ptx_store(on_disk);
            let start = Instant::now();
            let repeat_origin = repeat.prepare(&dtypes).expect("loads");
            let cached = start.elapsed();

            let timing = gpu.profile(&batch, 20).expect("profiles");
            // The same kernel with one stage per reduction, each reading the inputs again.
            let mut direct = CudaExecutor::new(&kernel, DIMS, Outputs::untouched())
                .expect("opens the GPU")
                .with_schedule(Schedule::Direct)
                .expect("writes");
            let direct_ms = direct.profile(&batch, 20).expect("profiles").kernel_ms;
            // Other block sizes than the rule's (docs/cuda.md, "Launch shape"; not tuned on a GPU).
            let sizes: Vec<String> = [256, 1024]
                .into_iter()
                .map(|threads| {
                    let mut other = CudaExecutor::new(&kernel, DIMS, Outputs::untouched())
                        .expect("opens the GPU")
                        .with_threads(threads)
                        .expect("writes");
                    let kernel_ms = other.profile(&batch, 20).expect("profiles").kernel_ms;
                    format!("{threads} threads {kernel_ms:.3} ms")
                })
                .collect();
            println!(
                "{name:9} {}: one pass at {} threads {:.3} ms, {}; direct schedule {direct_ms:.3} ms",
                dtype.name(),
                camc_compiler::codegen::cuda::threads_for(&DIMS),
                timing.kernel_ms,
                sizes.join(", ")
            );
            let mut out = vec![0.0f32; n * DIMS.h * DIMS.w];
            let mut bad = vec![0; n];
            let end_to_end = best(5, || {
                gpu.run_into(&batch, &mut out, &mut [], &mut bad).expect("runs")
            });
            let mut cpu = CpuExecutor::new(&kernel, DIMS, Outputs::untouched()).expect("JIT compiles");
            let mut cpu_out = vec![0.0f32; out.len()];
            let jit = best(3, || {
                cpu.run_into(&batch, &mut cpu_out, &mut [], &mut bad)
                    .expect("runs")
            });
            let max_diff = out
                .iter()
                .zip(&cpu_out)
                .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
                .fold(0.0f32, f32::max);

            let bytes =
                (kernel.inputs.len() * n * per_image * if dtype == Dtype::F16 { 2 } else { 4 }) as f64;
            let kernel_bw = bytes / (timing.kernel_ms * 1e-3) / 1e9;
            let copy_bw = 2.0 * bytes / (timing.copy_ms * 1e-3) / 1e9;
            println!(
                "{name:9} {}: NVRTC+load {:.1} ms ({origin:?}), repeat {:.3} ms ({repeat_origin:?}) | \
                 kernel {:.3} ms = {kernel_bw:.0} GB/s read | D2D copy {:.3} ms = {copy_bw:.0} GB/s read+write | \
                 kernel at {:.0}% of copy bandwidth | run with H2D+D2H {:.1} ms | CPU JIT {:.1} ms \
                 (kernel {:.0}x, end-to-end {:.1}x faster) | max rel diff vs JIT {max_diff:.1e}",
                dtype.name(),
                ms(compile),
                ms(cached),
                timing.kernel_ms,
                timing.copy_ms,
                100.0 * kernel_bw / copy_bw,
                ms(end_to_end),
                ms(jit),
                ms(jit) / timing.kernel_ms,
                ms(jit) / ms(end_to_end),
            );
            rows.push(format!(
                "| {n} | {name} | {} | {:.3} ms | {kernel_bw:.0} GB/s | {copy_bw:.0} GB/s | **{:.0}%** | {direct_ms:.3} ms ({:.0}%) | {:.1} ms | {max_diff:.0e} |",
                dtype.name(),
                timing.kernel_ms,
                100.0 * kernel_bw / copy_bw,
                100.0 * (bytes / (direct_ms * 1e-3) / 1e9) / copy_bw,
                ms(jit),
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&cache_dir);
    println!("\nThe rows of docs/benchmarks.md:");
    println!("| n | method | dtype | kernel | read bandwidth | D2D copy (r+w) | kernel / copy | direct schedule (% of copy) | CPU JIT | max rel diff |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}

//! The CPU JIT against the reference interpreter, a memory-read baseline and pytorch-grad-cam,
//! on a ResNet-50-like cache held in memory: n = 256 images, k = 2048 channels, 7×7 maps, random
//! f32 activations and gradients, output 224×224. Run with `cargo bench --bench cpu` (set
//! `CAMC_BENCH_IMAGES` to change n). It prints times and the ratios measured in this run;
//! nothing is asserted.
//!
//! pytorch-grad-cam is timed on the same tensors by `benches/pytorch_grad_cam_compute.py`, run
//! with `$CAMC_PYTHON`, else `.venv-py/bin/python` (`scripts/install-torch.sh` installs torch
//! and grad-cam there), else `python3`; where it is not installed, that part is skipped.

use camc_compiler::dims::Dims;
use camc_compiler::opt::Level;
use camc_runtime::batch::{Batch, Data};
use camc_runtime::exec::cpu::CpuExecutor;
use camc_runtime::exec::interp::InterpExecutor;
use camc_runtime::exec::{Executor, Outputs};
use camc_runtime::heatmap_file::HeatmapWriter;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DIMS: Dims = Dims::new(2048, 1, 7, 7);
/// The output size of the post-processed runs, as a ResNet-50's input.
const SIZE: [usize; 2] = [224, 224];
const METHODS: [&str; 2] = ["gradcam", "gradcampp"];

/// Best wall time of `repeats` runs.
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

/// Touches every value with 16 independent sums, so the loop vectorizes and is bound by memory,
/// not by the latency of one running sum.
fn read(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 16];
    let chunks = values.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, v) in lanes.iter_mut().zip(chunk) {
            *lane += v;
        }
    }
    lanes.iter().sum::<f32>() + rest
}

fn kernel(name: &str) -> camc_compiler::ir::Kernel {
    let checked = camc_compiler::check_stdlib(name).expect("a stdlib method");
    let program = checked.program.as_ref().expect("checks");
    let root = program.exported(name).expect("defined");
    camc_compiler::compile_kernel(program, root, &HashMap::new(), Level::Exact).expect("compiles")
}

/// The batch of the first `n` images of f32 inputs holding `per_image` values per image.
fn first_images<'a>(data: &[Data<'a>], n: usize, per_image: usize) -> Batch<'a> {
    let inputs = data
        .iter()
        .map(|d| match d {
            Data::F32(v) => Data::F32(&v[..n * per_image]),
            other => *other,
        })
        .collect();
    Batch {
        files: Vec::new(),
        n,
        inputs,
    }
}

fn write_npy(path: &Path, shape: &[usize], values: &[f32]) {
    let mut file = HeatmapWriter::create(path, shape, &[]).expect("creates the .npy");
    file.write(values).expect("writes");
    file.finish().expect("writes");
}

/// The Python that runs pytorch-grad-cam.
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("CAMC_PYTHON") {
        return path.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-py/bin/python");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// pytorch-grad-cam's time (ms) per method on the tensors in `dir` (`A.npy`, `G.npy`), and the
/// largest difference to camc's results there (`METHOD.npy`, as text); `None` where it cannot run.
fn pytorch_grad_cam(dir: &Path) -> Option<HashMap<String, (f64, String)>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_grad_cam_compute.py");
    let output = Command::new(python())
        .arg(script)
        .args([dir.join("A.npy"), dir.join("G.npy")])
        .args([SIZE[0].to_string(), "3".into()])
        .arg(dir)
        .args(METHODS)
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            println!(
                "pytorch-grad-cam: skipped ({})",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return None;
        }
        Err(e) => {
            println!(
                "pytorch-grad-cam: skipped (cannot run {}: {e})",
                python().display()
            );
            return None;
        }
    };
    let mut times = HashMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        let method = value["method"].as_str()?.to_string();
        let diff = value["diff"].as_str()?.to_string();
        times.insert(method, (value["ms"].as_f64()?, diff));
    }
    Some(times)
}

fn main() {
    let n: usize = std::env::var("CAMC_BENCH_IMAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let per_image = DIMS.k * DIMS.h * DIMS.w;
    let a = random(n * per_image, 1, true);
    let g = random(n * per_image, 2, false);
    let threads = rayon::current_num_threads();
    println!("n={n} k={} {}x{}, {threads} threads", DIMS.k, DIMS.h, DIMS.w);

    // Baseline: read A and G once (a parallel sum), the least any method must do.
    let read = best(5, || {
        let total: f32 = [&a, &g]
            .par_iter()
            .flat_map(|v| v.par_chunks(1 << 16))
            .map(read)
            .sum();
        std::hint::black_box(total);
    });
    let bytes = (2 * n * per_image * 4) as f64;
    println!(
        "memory read of A and G: {:.1} ms ({:.1} GB/s)",
        read.as_secs_f64() * 1e3,
        bytes / read.as_secs_f64() / 1e9
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut scaled_times = Vec::new();
    for name in METHODS {
        let kernel = kernel(name);
        let start = Instant::now();
        let mut cpu = CpuExecutor::new(&kernel, DIMS, Outputs::untouched()).expect("JIT compiles");
        let compile = start.elapsed();
        let data: Vec<Data> = kernel
            .inputs
            .iter()
            .map(|i| Data::F32(if i.name == "A" { &a } else { &g }))
            .collect();
        let batch = Batch {
            files: Vec::new(),
            n,
            inputs: data.clone(),
        };
        let mut out = vec![0.0f32; n * DIMS.h * DIMS.w];
        let mut bad = vec![0; n];
        let jit = best(5, || {
            cpu.run_into(&batch, &mut out, &mut [], &mut bad).expect("runs")
        });
        // As `camc run` computes its output: the post-processing to 224×224 fused in.
        let mut scaled = vec![0.0f32; n * SIZE[0] * SIZE[1]];
        // Its compile, and the first call (one image).
        let one = first_images(&data, 1, per_image);
        let start = Instant::now();
        let mut fused =
            CpuExecutor::new(&kernel, DIMS, Outputs::processed(SIZE.to_vec())).expect("JIT compiles");
        fused
            .run_into(&one, &mut [], &mut scaled[..SIZE[0] * SIZE[1]], &mut bad[..1])
            .expect("runs");
        let scaled_compile = start.elapsed();
        let jit_scaled = best(5, || {
            fused
                .run_into(&batch, &mut [], &mut scaled, &mut bad)
                .expect("runs");
        });
        write_npy(
            &dir.path().join(format!("{name}.npy")),
            &[n, SIZE[0], SIZE[1]],
            &scaled,
        );
        scaled_times.push((name, jit_scaled));
        // The interpreter is slow: time a few images and scale.
        let few = n.min(8);
        let small = first_images(&data, few, per_image);
        let mut interp = InterpExecutor::new(&kernel, DIMS, Outputs::untouched()).expect("valid outputs");
        let mut small_out = vec![0.0f32; few * DIMS.h * DIMS.w];
        let interp_time = best(2, || {
            interp
                .run_into(&small, &mut small_out, &mut [], &mut bad[..few])
                .expect("runs")
        })
        .as_secs_f64()
            * n as f64
            / few as f64;
        let read_bytes = (kernel.inputs.len() * n * per_image * 4) as f64;
        println!(
            "{name:10} compile {:.2} ms | jit {:.1} ms ({:.1} GB/s of inputs, {:.2}x the memory-read time) | interpreter {:.0} ms (jit {:.0}x faster)",
            compile.as_secs_f64() * 1e3,
            jit.as_secs_f64() * 1e3,
            read_bytes / jit.as_secs_f64() / 1e9,
            jit.as_secs_f64() / (read.as_secs_f64() * read_bytes / bytes),
            interp_time * 1e3,
            interp_time / jit.as_secs_f64(),
        );
        println!(
            "{name:10} with post-processing to {}x{}: jit {:.1} ms | compile + one image {:.2} ms",
            SIZE[0],
            SIZE[1],
            jit_scaled.as_secs_f64() * 1e3,
            scaled_compile.as_secs_f64() * 1e3,
        );
    }

    let shape = [n, DIMS.k, DIMS.h, DIMS.w];
    write_npy(&dir.path().join("A.npy"), &shape, &a);
    write_npy(&dir.path().join("G.npy"), &shape, &g);
    drop((a, g));
    let Some(reference) = pytorch_grad_cam(dir.path()) else {
        return;
    };
    for (name, jit_scaled) in scaled_times {
        let Some((ms, diff)) = reference.get(name) else {
            continue;
        };
        let ours = jit_scaled.as_secs_f64() * 1e3;
        println!(
            "{name:10} pytorch-grad-cam {ms:.1} ms on the same tensors | jit with post-processing {ours:.1} ms | speed-up {:.1}x | {diff}",
            ms / ours
        );
    }
}

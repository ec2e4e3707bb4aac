//! The CUDA backend. Without a GPU: the `.cu` of every stdlib method is a snapshot
//! (tests/out/cuda/stdlib), and every stdlib method and a few hundred random programs compile to
//! PTX with NVRTC (skipped, visibly, where libnvrtc is missing). With a GPU and its driver: the
//! CUDA executor agrees with the interpreter on every stdlib method and on random programs.

#[path = "cuda_emu/mod.rs"]
mod emu;
mod support;

use camc_compiler::codegen::cuda::{self, Error};
use camc_compiler::dims::Dims;
use camc_compiler::dtype::Dtype;
use camc_compiler::ir::{Kernel, Op};
use camc_compiler::opt::Level;
use camc_runtime::batch::{Batch, Data};
use camc_runtime::exec::cuda::{gpu_present, nvrtc, CudaExecutor};
use camc_runtime::exec::interp::InterpExecutor;
use camc_runtime::exec::{ExecError, Executor, Outputs};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRng, TestRunner};

fn stdlib_kernels() -> Vec<(String, Kernel)> {
    camc_compiler::stdlib::names()
        .map(|name| (name.to_string(), support::stdlib_kernel(name, Level::Exact)))
        .collect()
}

/// `count` random well-typed programs (deterministic), compiled.
fn random_kernels(count: usize, depth: u32) -> Vec<(String, Kernel)> {
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(Config::default().rng_algorithm),
    );
    let strategy = support::gen::program(depth);
    (0..count)
        .map(|_| {
            let source = strategy.new_tree(&mut runner).expect("generates").current();
            let kernel = support::kernel(&source, Level::Exact);
            (source, kernel)
        })
        .collect()
}

fn nvrtc_or_skip(test: &str) -> bool {
    match nvrtc::available() {
        Ok(()) => true,
        Err(why) if std::env::var_os("CAMC_REQUIRE_NVRTC").is_some_and(|v| v != "0") => {
            panic!("{test}: CAMC_REQUIRE_NVRTC is set but {why}")
        }
        Err(why) => {
            skip(test, &why);
            false
        }
    }
}

/// Says on the real stderr (not the captured one) that a test did not run, and why.
/// Whether a GPU is here; else the test is skipped, or fails where `CAMC_REQUIRE_GPU` is set
/// (scripts/gpu-check.sh), so that a GPU run cannot pass by skipping.
fn gpu_or_skip(test: &str) -> bool {
    if gpu_present() {
        return true;
    }
    if std::env::var_os("CAMC_REQUIRE_GPU").is_some_and(|v| v != "0") {
        panic!("{test}: CAMC_REQUIRE_GPU is set but there is no CUDA driver or GPU");
    }
    skip(test, "no CUDA driver or GPU");
    false
}

fn skip(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

#[test]
fn stdlib_cuda_sources_match_their_snapshots() {
    let mut failures = Vec::new();
    for (name, kernel) in stdlib_kernels() {
        match cuda::write(&kernel, &cuda::uniform_variants(&kernel)) {
            Ok(source) => {
                assert_eq!(source.entries[0], format!("camc_{name}_f32"));
                if let Err(e) = support::snapshot(&format!("cuda/stdlib/{name}.cu"), &source.text) {
                    failures.push(e);
                }
            }
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    support::report(failures);
}

#[test]
fn a_variant_needs_one_dtype_per_input() {
    let kernel = support::kernel("cam g(A: [k,h,w]) = sum[k](A)", Level::Exact);
    let err = cuda::write(&kernel, &[vec![Dtype::F32, Dtype::F16]]).unwrap_err();
    assert!(matches!(err, Error::VariantArity { expected: 1, .. }), "{err}");
}

#[test]
fn entry_points_are_named_by_dtype() {
    let kernel = support::kernel("cam g(A: [k,h,w], G: [k,h,w]) = sum[k](A*G)", Level::Exact);
    assert_eq!(cuda::entry_name(&kernel, &[Dtype::F16, Dtype::F16]), "camc_g_f16");
    assert_eq!(
        cuda::entry_name(&kernel, &[Dtype::Bf16, Dtype::F32]),
        "camc_g_bf16_f32"
    );
    let source = cuda::write(&kernel, &[vec![Dtype::Bf16, Dtype::F32]]).expect("writes");
    assert!(
        source.text.contains("camc_body<camc_bf16, float>"),
        "{}",
        source.text
    );
    // The [h,w] sum over channel blocks: its f64 accumulators (2 doubles, 4 floats, per pixel)
    // and its result, and the [h,w] map kept for post-processing in the kernel: 6*h*w floats
    // per block.
    assert_eq!(source.scratch_floats(|_| 3), 54);
    // Rounded up to even, so that every block's accumulators are 8-byte aligned.
    assert_eq!(source.scratch_floats(|_| 1), 6);
    let odd = support::kernel(
        "cam m(A: [k,h,w]) = sum[k](A) + mean[h,w](sum[k](A))",
        Level::Exact,
    );
    let odd = cuda::write(&odd, &[vec![Dtype::F32]]).expect("writes");
    assert_eq!(odd.scratch_floats(|_| 3), 4 * 9 + 9 + 1 + 9 + 1);
}

/// Compiles the kernel's `variants` with NVRTC and checks that each entry point is in the PTX.
fn check_ptx(name: &str, kernel: &Kernel, variants: &[Vec<Dtype>]) -> Result<(), String> {
    check_ptx_for(name, kernel, variants, cuda::THREADS)
}

/// [`check_ptx`] for a kernel written for blocks of `threads`.
fn check_ptx_for(name: &str, kernel: &Kernel, variants: &[Vec<Dtype>], threads: u32) -> Result<(), String> {
    let source = cuda::write_for(kernel, variants, threads).map_err(|e| format!("{name}: {e}"))?;
    let ptx = nvrtc::compile_ptx(&source.text, "test.cu", "sm_75").map_err(|e| format!("{name}:\n{e}"))?;
    for entry in &source.entries {
        if !ptx.contains(&format!(".entry {entry}(")) {
            return Err(format!("{name}: no `.entry {entry}` in the PTX"));
        }
    }
    Ok(())
}

/// Compiles several kernels as one NVRTC program; on an error, finds the kernel at fault.
fn check_ptx_group(group: &[(String, Kernel)]) -> Result<(), String> {
    let mut text = String::new();
    let mut entries = Vec::new();
    for (i, (_, kernel)) in group.iter().enumerate() {
        let mut renamed = kernel.clone();
        renamed.name = format!("{}{i}", kernel.name);
        let source =
            cuda::write(&renamed, &[vec![Dtype::F32; kernel.inputs.len()]]).map_err(|e| e.to_string())?;
        text.push_str(&format!("namespace k{i} {{\n{}\n}}\n", source.text));
        entries.extend(source.entries);
    }
    match nvrtc::compile_ptx(&text, "group.cu", "sm_75") {
        Ok(ptx) => match entries.iter().find(|e| !ptx.contains(&format!(".entry {e}("))) {
            Some(missing) => Err(format!("no `.entry {missing}` in the PTX")),
            None => Ok(()),
        },
        Err(e) => {
            let one = |(source, kernel): &(String, Kernel)| {
                check_ptx(source, kernel, &[vec![Dtype::F32; kernel.inputs.len()]])
            };
            group.iter().try_for_each(one)?;
            Err(format!("each kernel compiles alone but not the group: {e}"))
        }
    }
}

#[test]
fn every_stdlib_method_compiles_to_ptx() {
    if !nvrtc_or_skip("every_stdlib_method_compiles_to_ptx") {
        return;
    }
    let mut failures: Vec<String> = stdlib_kernels()
        .iter()
        .filter_map(|(name, kernel)| check_ptx(name, kernel, &cuda::uniform_variants(kernel)).err())
        .collect();
    // The smallest and the largest block size the launch rule and the emulation use.
    for (name, kernel) in stdlib_kernels() {
        for threads in [cuda::MIN_THREADS, 1024] {
            let f32_only = [vec![Dtype::F32; kernel.inputs.len()]];
            if let Err(e) = check_ptx_for(
                &format!("{name} ({threads} threads)"),
                &kernel,
                &f32_only,
                threads,
            ) {
                failures.push(e);
            }
        }
    }
    support::report(failures);
}

#[test]
fn stdlib_methods_read_their_large_inputs_with_16_byte_loads() {
    if !nvrtc_or_skip("stdlib_methods_read_their_large_inputs_with_16_byte_loads") {
        return;
    }
    // Every method with a channel phase, in every input dtype: the entry point's PTX loads
    // 16 bytes at a time (`ld.global.v4` or its non-coherent form), and nothing of it lives in
    // local memory (the vector's lanes stay in registers).
    let mut failures = Vec::new();
    for (name, kernel) in stdlib_kernels() {
        let source = cuda::write(&kernel, &cuda::uniform_variants(&kernel)).expect("writes");
        if !source.text.contains("// channel blocks") {
            continue;
        }
        let ptx = match nvrtc::compile_ptx(&source.text, "test.cu", "sm_90") {
            Ok(ptx) => ptx,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for entry in &source.entries {
            let body = ptx
                .split(".entry ")
                .find(|part| part.starts_with(&format!("{entry}(")))
                .unwrap_or_default();
            if !body.contains("ld.global.v4.") && !body.contains("ld.global.nc.v4.") {
                failures.push(format!("{entry}: no 16-byte load"));
            }
            if body.contains(".local") {
                failures.push(format!("{entry}: uses local memory"));
            }
        }
    }
    support::report(failures);
}

#[test]
fn random_programs_compile_to_ptx() {
    if !nvrtc_or_skip("random_programs_compile_to_ptx") {
        return;
    }
    let count = std::env::var("CAMC_CUDA_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let kernels = random_kernels(count, 3);
    // NVRTC takes most of a second a kernel: 25 kernels (renamed, each in a namespace) to one
    // NVRTC call, on two threads; the f32 entry point only (the stdlib test covers f16/bf16).
    let groups: Vec<&[(String, Kernel)]> = kernels.chunks(25).collect();
    let failures: Vec<String> = std::thread::scope(|scope| {
        let halves: Vec<_> = groups
            .chunks(groups.len().div_ceil(2).max(1))
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|g| check_ptx_group(g).err())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("no panic"))
            .collect()
    });
    println!("{} random programs compiled to PTX", kernels.len());
    support::report(failures);
}

#[test]
fn the_executor_without_a_gpu_is_an_error_not_a_panic() {
    if gpu_present() {
        skip(
            "the_executor_without_a_gpu_is_an_error_not_a_panic",
            "this machine has a GPU",
        );
        return;
    }
    let kernel = support::kernel("cam g(A: [k,h,w]) = sum[k](A)", Level::Exact);
    let err = CudaExecutor::new(&kernel, Dims::new(2, 1, 2, 2), Outputs::untouched())
        .err()
        .expect("no GPU here");
    let ExecError::Backend { backend, message } = &err else {
        panic!("{err}");
    };
    assert_eq!(*backend, "cuda");
    assert!(message.contains("NVRTC") || message.contains("CUDA"), "{message}");
}

/// Deterministic values in (-2, 2) with some exact zeros (dead units), a few per image.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state.is_multiple_of(7) {
                0.0
            } else {
                (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            }
        })
        .collect()
}

/// the backends tolerance (docs/run.md) for the stdlib (1e-5 relative, 1e-6 absolute); random programs, whose `exp`, `pow`
/// and comparisons amplify an ulp of libm difference, get the optimizer tests' 1e-4.
fn close(a: f32, b: f32, loose: bool) -> bool {
    let (abs, rel) = if loose { (1e-4, 1e-4) } else { (1e-6, 1e-5) };
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= abs + rel * a.abs().max(b.abs())
}

/// Runs `kernel` on `n` images on the GPU and the interpreter; describes the first mismatch.
fn compare(
    name: &str,
    kernel: &Kernel,
    dims: Dims,
    n: usize,
    dtype: Dtype,
    loose: bool,
) -> Result<(), String> {
    // Values exact in `dtype`, so the interpreter (f32) and the GPU see the same numbers.
    let data: Vec<Vec<f32>> = kernel
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| emu::rounded(values(n * dims.len(input.ty), i as u64 + 1), dtype))
        .collect();
    let halves: Vec<Vec<half::f16>> = data
        .iter()
        .map(|d| d.iter().map(|&x| half::f16::from_f32(x)).collect())
        .collect();
    let brains: Vec<Vec<half::bf16>> = data
        .iter()
        .map(|d| d.iter().map(|&x| half::bf16::from_f32(x)).collect())
        .collect();
    let gpu_inputs: Vec<Data> = match dtype {
        Dtype::F32 => data.iter().map(|d| Data::F32(d)).collect(),
        Dtype::F16 => halves.iter().map(|d| Data::F16(d)).collect(),
        Dtype::Bf16 => brains.iter().map(|d| Data::Bf16(d)).collect(),
        other => panic!("{other:?} is not a kernel input type"),
    };
    let cpu_inputs: Vec<Data> = data.iter().map(|d| Data::F32(d)).collect();
    let len = n * dims.len(kernel.output_ty());
    let (mut want, mut got) = (vec![0.0; len], vec![0.0; len]);
    support::run_raw(
        &mut InterpExecutor::new(kernel, dims, Outputs::untouched()).expect("valid outputs"),
        &Batch {
            files: Vec::new(),
            n,
            inputs: cpu_inputs,
        },
        &mut want,
    )
    .map_err(|e| format!("{name}: interp: {e}"))?;
    let mut gpu =
        CudaExecutor::new(kernel, dims, Outputs::untouched()).map_err(|e| format!("{name}: {e}"))?;
    support::run_raw(
        &mut gpu,
        &Batch {
            files: Vec::new(),
            n,
            inputs: gpu_inputs,
        },
        &mut got,
    )
    .map_err(|e| format!("{name}: {e}"))?;
    match (0..len).find(|&i| !close(want[i], got[i], loose || amplifies(kernel))) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{name} {dims:?}: value {i}: interp {} vs cuda {}",
            want[i], got[i]
        )),
    }
}

#[test]
fn on_a_gpu_every_stdlib_method_matches_the_interpreter() {
    if !gpu_or_skip("on_a_gpu_every_stdlib_method_matches_the_interpreter") {
        return;
    }
    let mut failures = Vec::new();
    for (name, kernel) in stdlib_kernels() {
        for (dims, n) in [
            (Dims::new(2048, 1, 7, 7).with_classes(1000), 5),
            (Dims::new(5, 1, 3, 4).with_classes(3), 3),
            (Dims::new(64, 1, 28, 28).with_classes(10), 2),
        ] {
            if let Err(e) = compare(&name, &kernel, dims, n, Dtype::F32, false) {
                failures.push(e);
            }
        }
        for dtype in [Dtype::F16, Dtype::Bf16] {
            if let Err(e) = compare(
                &name,
                &kernel,
                Dims::new(16, 1, 5, 5).with_classes(10),
                2,
                dtype,
                false,
            ) {
                failures.push(format!("{}: {e}", dtype.name()));
            }
        }
    }
    support::report(failures);
}

#[test]
fn on_a_gpu_random_programs_match_the_interpreter() {
    if !gpu_or_skip("on_a_gpu_random_programs_match_the_interpreter") {
        return;
    }
    let mut failures = Vec::new();
    for (source, kernel) in random_kernels(150, 3) {
        if let Err(e) = compare(&source, &kernel, Dims::new(6, 1, 3, 5), 3, Dtype::F32, true) {
            failures.push(e);
        }
    }
    support::report(failures);
}

/// Random inputs for `n` images of each of the kernel's inputs.
fn inputs_for(kernel: &Kernel, dims: Dims, n: usize) -> Vec<Vec<f32>> {
    kernel
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| match input.name.as_str() {
            "target" => support::class_indices(n, dims.c, i as u64),
            _ => values(support::copies(input, n) * dims.len(input.ty), i as u64 + 1),
        })
        .collect()
}

/// Runs the cases in the CPU emulation and on the interpreter; describes every mismatch.
fn compare_emulated(
    tag: &str,
    kernels: &[(String, Kernel)],
    cases: Vec<emu::Case>,
    loose: bool,
) -> Vec<String> {
    let threads = vec![cuda::THREADS; kernels.len()];
    compare_emulated_with(tag, kernels, &threads, cases, loose)
}

/// [`compare_emulated`] with each kernel written for blocks of its own `threads`.
fn compare_emulated_with(
    tag: &str,
    kernels: &[(String, Kernel)],
    threads: &[u32],
    cases: Vec<emu::Case>,
    loose: bool,
) -> Vec<String> {
    compare_emulated_scheduled(tag, kernels, threads, cuda::Schedule::OnePass, cases, loose)
}

/// [`compare_emulated_with`] with every kernel's stages laid out by `schedule`.
fn compare_emulated_scheduled(
    tag: &str,
    kernels: &[(String, Kernel)],
    threads: &[u32],
    schedule: cuda::Schedule,
    cases: Vec<emu::Case>,
    loose: bool,
) -> Vec<String> {
    let refs: Vec<(&Kernel, u32, cuda::Schedule)> = kernels
        .iter()
        .zip(threads)
        .map(|((_, k), &t)| (k, t, schedule))
        .collect();
    let outputs = match emu::run_scheduled(tag, &refs, &cases) {
        Ok(outputs) => outputs,
        Err(e) => return vec![e],
    };
    let mut failures = Vec::new();
    for (case, got) in cases.iter().zip(outputs) {
        let (name, kernel) = &kernels[case.which];
        let data: Vec<Data> = case.inputs.iter().map(|d| Data::F32(d)).collect();
        let mut want = vec![0.0; got.len()];
        if let Err(e) = support::run_raw(
            &mut InterpExecutor::new(kernel, case.dims, Outputs::untouched()).expect("valid outputs"),
            &Batch {
                files: Vec::new(),
                n: case.n,
                inputs: data,
            },
            &mut want,
        ) {
            failures.push(format!("{name}: interp: {e}"));
        } else if let Some(i) = (0..got.len()).find(|&i| !close(want[i], got[i], loose || amplifies(kernel)))
        {
            failures.push(format!(
                "{name} {:?}: value {i}: interp {} vs emulated cuda {}",
                case.dims, want[i], got[i]
            ));
        }
    }
    failures
}

/// Recipro-CAM min-max normalizes class probabilities over the positions: divided by their
/// spread, which with 1000 classes and 3 random channels is ~0.5% of their value, f32 `expf`'s
/// rounding in the kernel's softmax (the interpreter's is f64) grows to ~2e-5.
fn amplifies(kernel: &Kernel) -> bool {
    kernel.name.starts_with("reciprocam")
}

fn gxx_or_skip(test: &str) -> bool {
    let present = emu::available();
    if !present {
        skip(test, "g++ is missing (it runs the CUDA C on the CPU)");
    }
    present
}

/// Every input dtype of the kernels.
const ALL_DTYPES: &[Dtype] = &[Dtype::F32, Dtype::F16, Dtype::Bf16];

/// Raw-map cases of kernel `which` on `n` images of `dims`, one per storage dtype.
fn push_cases(
    cases: &mut Vec<emu::Case>,
    which: usize,
    kernel: &Kernel,
    dims: Dims,
    n: usize,
    dtypes: &[Dtype],
) {
    for &dtype in dtypes {
        let inputs = inputs_for(kernel, dims, n)
            .into_iter()
            .map(|v| emu::rounded(v, dtype))
            .collect();
        cases.push(emu::Case {
            which,
            n,
            dims,
            inputs,
            dtype,
            scaled: None,
            misaligned: false,
        });
    }
}

/// Sizes that reach every path of a reduction stage: warp groups and block-wide groups, more
/// outputs than threads in both layouts, and several images per block.
/// Programs over the class axis get from 2 to 1000 classes.
const EMULATED_SIZES: [(Dims, usize); 5] = [
    (Dims::new(64, 1, 7, 7).with_classes(10), 3),
    (Dims::new(5, 1, 3, 4).with_classes(3), 3),
    (Dims::new(3, 1, 20, 20).with_classes(1000), 2),
    (Dims::new(1000, 1, 2, 2).with_classes(7), 1),
    (Dims::new(2, 1, 1, 1).with_classes(2), 3),
];

#[test]
fn emulated_on_the_cpu_every_stdlib_method_matches_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_every_stdlib_method_matches_the_interpreter") {
        return;
    }
    let kernels = stdlib_kernels();
    let mut cases = Vec::new();
    for (which, (_, kernel)) in kernels.iter().enumerate() {
        // pc1's power iteration synchronizes the block thousands of times, slow with OS threads:
        // two sizes (one with more features than positions, one with fewer) and one image.
        let pc1 = kernel.nodes.iter().any(|node| matches!(node.op, Op::Pc1(..)));
        for (dims, n) in EMULATED_SIZES {
            if pc1 && dims.k != 64 && dims.k != 3 {
                continue;
            }
            let n = if pc1 { 1 } else { n };
            // Every size in f32; the first also with f16 and bf16 storage.
            push_cases(
                &mut cases,
                which,
                kernel,
                dims,
                n,
                if dims.k == 64 { ALL_DTYPES } else { &[Dtype::F32] },
            );
        }
    }
    support::report(compare_emulated("stdlib", &kernels, cases, false));
}

#[test]
fn emulated_on_the_cpu_other_block_sizes_match_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_other_block_sizes_match_the_interpreter") {
        return;
    }
    // Every stdlib method but pc1's (its power iteration is slow to emulate), written for the
    // smallest and the largest block CUDA allows camc (64 and 1024 threads) and for what
    // `threads_for` gives the sizes: a small map (five channels of 7×7) and a large one (three
    // channels of 56×56), f32, and f16 and bf16 storage on the small one.
    let sizes = [
        (Dims::new(5, 1, 7, 7).with_classes(3), 3),
        (Dims::new(3, 1, 56, 56).with_classes(4), 1),
    ];
    let mut kernels = Vec::new();
    let mut threads = Vec::new();
    for (name, kernel) in stdlib_kernels() {
        if kernel.nodes.iter().any(|node| matches!(node.op, Op::Pc1(..))) {
            continue;
        }
        let chosen: Vec<u32> = sizes.iter().map(|(dims, _)| cuda::threads_for(dims)).collect();
        for t in [64, 1024].into_iter().chain(chosen) {
            if !threads
                .iter()
                .zip(&kernels)
                .any(|(&u, (n, _)): (&u32, &(String, Kernel))| u == t && *n == name)
            {
                kernels.push((name.clone(), kernel.clone()));
                threads.push(t);
            }
        }
    }
    let mut cases = Vec::new();
    for (which, (_, kernel)) in kernels.iter().enumerate() {
        for (i, &(dims, n)) in sizes.iter().enumerate() {
            // Recipro-CAM min-max normalizes probabilities whose spread over 3 136 positions is
            // tiny, so f32 `expf` (the interpreter's is f64) moves them by ~1e-3 whatever the
            // block size (`amplifies`); its block sizes are covered on the small map.
            if i == 1 && amplifies(kernel) {
                continue;
            }
            push_cases(
                &mut cases,
                which,
                kernel,
                dims,
                n,
                if i == 0 { ALL_DTYPES } else { &[Dtype::F32] },
            );
        }
    }
    assert!(threads.contains(&64) && threads.contains(&1024));
    support::report(compare_emulated_with("threads", &kernels, &threads, cases, false));
}

#[test]
fn emulated_on_the_cpu_channel_blocks_and_misaligned_inputs_match_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_channel_blocks_and_misaligned_inputs_match_the_interpreter") {
        return;
    }
    // The one-pass schedule's paths, for every stdlib method, in f32, f16 and bf16,
    // with inputs 16-byte aligned and one element past it: 173 channels of 7×7 (several
    // channel blocks, the last one short), 13 channels of 5×3 (odd sizes: every image but the
    // first starts misaligned), 3 channels of 67×67 (one channel of two inputs does not fit
    // the stage: read from global memory).
    let sizes = [
        (Dims::new(173, 1, 7, 7).with_classes(5), 2),
        (Dims::new(13, 1, 5, 3).with_classes(3), 3),
        (Dims::new(3, 1, 67, 67).with_classes(2), 2),
    ];
    let kernels = stdlib_kernels();
    let mut cases = Vec::new();
    for (which, (_, kernel)) in kernels.iter().enumerate() {
        // pc1's methods keep the direct schedule (scalar loads); its power iteration is slow to
        // emulate: the odd size only, one image.
        let pc1 = kernel.nodes.iter().any(|node| matches!(node.op, Op::Pc1(..)));
        for (dims, n) in sizes {
            // Recipro-CAM's normalized probabilities over 4 489 positions: see `amplifies`.
            if dims.h == 67 && amplifies(kernel) || pc1 && dims.k != 13 {
                continue;
            }
            let n = if pc1 { 1 } else { n };
            for misaligned in [false, true] {
                let first = cases.len();
                push_cases(&mut cases, which, kernel, dims, n, ALL_DTYPES);
                for case in &mut cases[first..] {
                    case.misaligned = misaligned;
                }
            }
        }
    }
    support::report(compare_emulated("blocks", &kernels, cases, false));
}

#[test]
fn emulated_on_the_cpu_the_direct_schedule_matches_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_the_direct_schedule_matches_the_interpreter") {
        return;
    }
    // What the GPU benchmark compares the one-pass schedule with: every stdlib method but
    // pc1's (direct either way) with one stage per reduction, in f32, f16 and bf16.
    let kernels: Vec<(String, Kernel)> = stdlib_kernels()
        .into_iter()
        .filter(|(_, kernel)| !kernel.nodes.iter().any(|node| matches!(node.op, Op::Pc1(..))))
        .collect();
    let mut cases = Vec::new();
    for (which, (_, kernel)) in kernels.iter().enumerate() {
        push_cases(
            &mut cases,
            which,
            kernel,
            Dims::new(64, 1, 7, 7).with_classes(10),
            2,
            ALL_DTYPES,
        );
    }
    let threads = vec![cuda::THREADS; kernels.len()];
    support::report(compare_emulated_scheduled(
        "direct",
        &kernels,
        &threads,
        cuda::Schedule::Direct,
        cases,
        false,
    ));
}

#[test]
fn emulated_on_the_cpu_3d_programs_match_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_3d_programs_match_the_interpreter") {
        return;
    }
    let sources = [
        "cam g(A: [k,d,h,w], G: [k,d,h,w]) = relu(sum[k](mean[d,h,w](G) * A))",
        "cam s(A: [k,d,h,w], G: [k,d,h,w]) = normalize[h,w](sum[k](softmax[k](max[d](G)) * A)) + std[d](sum[k](A))",
        "cam m(A: [k,d,h,w]) = min[k](A) * norm[k,h](A) - max[d,h,w](sum[k](A))",
    ];
    let kernels: Vec<(String, Kernel)> = sources
        .iter()
        .map(|s| (s.to_string(), support::kernel(s, Level::Exact)))
        .collect();
    let mut cases = Vec::new();
    for (which, (_, kernel)) in kernels.iter().enumerate() {
        for (dims, n, dtype) in [
            (Dims::new(6, 3, 4, 5), 3, Dtype::F32),
            (Dims::new(40, 2, 9, 17), 1, Dtype::Bf16),
        ] {
            push_cases(&mut cases, which, kernel, dims, n, &[dtype]);
        }
    }
    support::report(compare_emulated("3d", &kernels, cases, false));
}

#[test]
fn emulated_on_the_cpu_random_programs_match_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_random_programs_match_the_interpreter") {
        return;
    }
    let kernels = random_kernels(60, 3);
    // Enough of them take the one-pass schedule for the last size, 40 channels of 16×16 (blocks
    // of 16 channels with two large inputs), to run several channel blocks, misaligned.
    let one_pass = kernels
        .iter()
        .filter(|(_, kernel)| {
            cuda::write(kernel, &[])
                .expect("writes")
                .text
                .contains("// channel blocks")
        })
        .count();
    assert!(
        one_pass >= 10,
        "{one_pass} of 60 random programs take the one-pass schedule"
    );
    let mut cases = Vec::new();
    for (which, (_, kernel)) in kernels.iter().enumerate() {
        for (dims, n, misaligned) in [
            (Dims::new(6, 1, 3, 5), 3, false),
            (Dims::new(40, 1, 2, 3), 2, false),
            (Dims::new(40, 1, 16, 16), 1, true),
        ] {
            let inputs = inputs_for(kernel, dims, n);
            cases.push(emu::Case {
                which,
                n,
                dims,
                inputs,
                dtype: Dtype::F32,
                scaled: None,
                misaligned,
            });
        }
    }
    support::report(compare_emulated("random", &kernels, cases, true));
}

fn camc(args: &[&str], without_nvrtc: bool) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_camc"));
    command.args(args);
    if without_nvrtc {
        command.env_remove("LD_LIBRARY_PATH");
    }
    command.output().expect("camc runs")
}

#[test]
fn camc_emit_cuda_writes_the_source_and_ptx_needs_nvrtc() {
    let out = camc(&["emit", "gradcam", "--target", "cuda"], false);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for entry in ["camc_gradcam_f32(", "camc_gradcam_f16(", "camc_gradcam_bf16("] {
        assert!(text.contains(&format!(
            "extern \"C\" __global__ void __launch_bounds__(CAMC_THREADS, CAMC_MIN_BLOCKS) {entry}"
        )));
    }
    // Without libnvrtc on the loader's path (unless the system has its own): exit 1, a message.
    let out = camc(&["emit", "gradcam", "--target", "ptx"], true);
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("NVRTC (libnvrtc.so) was not found"));
    }
    if nvrtc::available().is_ok() {
        let out = camc(&["emit", "gradcam", "--target", "ptx", "--arch", "sm_90"], false);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ptx = String::from_utf8_lossy(&out.stdout);
        assert!(
            ptx.contains(".target sm_90") && ptx.contains(".entry camc_gradcam_bf16("),
            "{ptx}"
        );
        let out = camc(
            &["emit", "gradcam", "--target", "ptx", "--arch", "sm_1;rm"],
            false,
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not a GPU architecture name"));
    }
}

#[test]
fn on_a_gpu_batches_are_split_into_launches_and_buffers_reused() {
    if !gpu_or_skip("on_a_gpu_batches_are_split_into_launches_and_buffers_reused") {
        return;
    }
    let kernel = support::kernel(
        "cam g(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](G) * A))",
        Level::Exact,
    );
    let dims = Dims::new(32, 1, 7, 7);
    let mut gpu = CudaExecutor::new(&kernel, dims, Outputs::untouched()).expect("opens the GPU");
    gpu.set_max_images_per_launch(3);
    for n in [7, 2, 9] {
        let inputs: Vec<Vec<f32>> = (0..2).map(|i| values(n * 32 * 49, n as u64 * 10 + i)).collect();
        let batch = || Batch {
            files: Vec::new(),
            n,
            inputs: inputs.iter().map(|d| Data::F32(d)).collect(),
        };
        let (mut want, mut got) = (vec![0.0; n * 49], vec![0.0; n * 49]);
        support::run_raw(
            &mut InterpExecutor::new(&kernel, dims, Outputs::untouched()).expect("valid outputs"),
            &batch(),
            &mut want,
        )
        .expect("interp");
        support::run_raw(&mut gpu, &batch(), &mut got).expect("cuda");
        let bad = (0..want.len()).find(|&i| !close(want[i], got[i], false));
        assert!(bad.is_none(), "n = {n}: {bad:?}: {want:?} vs {got:?}");
    }
}

/// pc1 with many more features than positions (ResNet-50's last layer), where a matrix
/// centred in f32 moved the projection by 1e-4 on an H100: centring in f64 keeps it within 1e-5.
#[test]
fn emulated_on_the_cpu_pc1_over_2048_channels_matches_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_pc1_over_2048_channels_matches_the_interpreter") {
        return;
    }
    let kernels: Vec<(String, Kernel)> = stdlib_kernels()
        .into_iter()
        .filter(|(name, _)| name == "eigengradcam" || name == "eigencam")
        .collect();
    let dims = Dims::new(2048, 1, 7, 7);
    let cases = (0..kernels.len())
        .map(|which| emu::Case {
            which,
            n: 5,
            dims,
            inputs: inputs_for(&kernels[which].1, dims, 5),
            dtype: Dtype::F32,
            scaled: None,
            misaligned: false,
        })
        .collect();
    support::report(compare_emulated("pc1-2048", &kernels, cases, false));
}

/// The kernel's own post-processing (`out_h > 0`) against the interpreter's raw maps put through
/// the host's post-processing: up- and down-sizing, one image with a NaN input whose
/// non-finite values must be counted and zeroed alike.
#[test]
fn emulated_on_the_cpu_post_processing_in_the_kernel_matches_the_host() {
    if !gxx_or_skip("emulated_on_the_cpu_post_processing_in_the_kernel_matches_the_host") {
        return;
    }
    let kernels: Vec<(String, Kernel)> = stdlib_kernels()
        .into_iter()
        .filter(|(_, k)| !k.nodes.iter().any(|node| matches!(node.op, Op::Pc1(..))))
        .collect();
    let sizes = [
        (Dims::new(64, 1, 7, 7), 3, (20, 23)),
        (Dims::new(5, 1, 3, 4), 2, (64, 48)),
        (Dims::new(3, 1, 9, 8), 1, (4, 3)),
    ];
    let mut cases = Vec::new();
    for (which, (_, kernel)) in kernels.iter().enumerate() {
        for (dims, n, size) in sizes {
            let mut inputs = inputs_for(kernel, dims, n);
            if n > 1 {
                let per_image = dims.len(kernel.inputs[0].ty);
                inputs[0][per_image + 1] = f32::NAN;
            }
            cases.push(emu::Case {
                which,
                n,
                dims,
                inputs,
                dtype: Dtype::F32,
                scaled: Some(size),
                misaligned: false,
            });
        }
    }
    let refs: Vec<&Kernel> = kernels.iter().map(|(_, k)| k).collect();
    let outputs = match emu::run("scaled", &refs, &cases) {
        Ok(outputs) => outputs,
        Err(e) => panic!("{e}"),
    };
    let mut failures = Vec::new();
    for (case, got) in cases.iter().zip(outputs) {
        let (name, kernel) = &kernels[case.which];
        let (oh, ow) = case.scaled.expect("scaled");
        let raw_len = case.dims.len(kernel.output_ty());
        let mut raw = vec![0.0; case.n * raw_len];
        let data: Vec<Data> = case.inputs.iter().map(|d| Data::F32(d)).collect();
        support::run_raw(
            &mut InterpExecutor::new(kernel, case.dims, Outputs::untouched()).expect("valid outputs"),
            &Batch {
                files: Vec::new(),
                n: case.n,
                inputs: data,
            },
            &mut raw,
        )
        .expect("interp");
        for (i, map) in raw.chunks_mut(raw_len).enumerate() {
            let (want, bad) = support::host_processed(map, &[case.dims.h, case.dims.w], &[oh, ow]);
            let image = &got[i * oh * ow..(i + 1) * oh * ow];
            let counted = got[case.n * oh * ow + i];
            if counted != bad as f32 {
                failures.push(format!(
                    "{name} {:?} image {i}: {counted} non-finite, host {bad}",
                    case.dims
                ));
            }
            if let Some(j) = (0..want.len()).find(|&j| !close(want[j], image[j], false)) {
                failures.push(format!(
                    "{name} {:?} -> {oh}x{ow} image {i} value {j}: host {} vs emulated cuda {}",
                    case.dims, want[j], image[j]
                ));
            }
        }
    }
    support::report(failures);
}

/// On a GPU, the post-processing in the kernel against the interpreter's raw maps
/// put through the host's post-processing, at ResNet-50's size to 224×224, with a NaN image.
#[test]
fn on_a_gpu_post_processing_in_the_kernel_matches_the_host() {
    if !gpu_or_skip("on_a_gpu_post_processing_in_the_kernel_matches_the_host") {
        return;
    }
    let mut failures = Vec::new();
    for (name, kernel) in stdlib_kernels() {
        for (dims, n, (oh, ow)) in [
            (Dims::new(2048, 1, 7, 7), 3, (224, 224)),
            (Dims::new(64, 1, 28, 28), 2, (100, 60)),
        ] {
            let mut inputs = inputs_for(&kernel, dims, n);
            inputs[0][dims.len(kernel.inputs[0].ty) + 3] = f32::NAN;
            let data = || Batch {
                files: Vec::new(),
                n,
                inputs: inputs.iter().map(|d| Data::F32(d)).collect(),
            };
            let raw_len = dims.len(kernel.output_ty());
            let mut raw = vec![0.0; n * raw_len];
            support::run_raw(
                &mut InterpExecutor::new(&kernel, dims, Outputs::untouched()).expect("valid outputs"),
                &data(),
                &mut raw,
            )
            .expect("interp");
            let (mut got, mut counts) = (vec![0.0; n * oh * ow], vec![0; n]);
            let mut gpu =
                CudaExecutor::new(&kernel, dims, Outputs::processed(vec![oh, ow])).expect("opens the GPU");
            if let Err(e) = gpu.run_into(&data(), &mut [], &mut got, &mut counts) {
                failures.push(format!("{name}: the post-processing in the kernel gave {e}"));
                continue;
            }
            for (i, map) in raw.chunks_mut(raw_len).enumerate() {
                let (want, bad) = support::host_processed(map, &[dims.h, dims.w], &[oh, ow]);
                if counts[i] != bad {
                    failures.push(format!(
                        "{name} {dims:?} image {i}: {} non-finite, host {bad}",
                        counts[i]
                    ));
                }
                let image = &got[i * oh * ow..(i + 1) * oh * ow];
                if let Some(j) = (0..want.len()).find(|&j| !close(want[j], image[j], false)) {
                    failures.push(format!(
                        "{name} {dims:?} image {i} value {j}: host {} vs cuda {}",
                        want[j], image[j]
                    ));
                }
            }
        }
    }
    support::report(failures);
}

/// An input shared by all images (`W: [k]`, one tensor for the batch, read by every image's
/// block) in the generated CUDA, f32, f16 and bf16, against the interpreter. The language cannot
/// declare a shared parameter yet, so the input is marked in the IR.
#[test]
fn emulated_on_the_cpu_an_input_shared_by_all_images_matches_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_an_input_shared_by_all_images_matches_the_interpreter") {
        return;
    }
    let (kernel, w) = support::kernel_sharing("cam shared(A: [k,h,w], W: [k]) = relu(sum[k](W * A))", "W");
    let source = cuda::write(&kernel, &cuda::uniform_variants(&kernel)).expect("writes");
    assert!(
        source.text.contains(&format!("x{w} = in{w};")),
        "W is not offset by the image"
    );
    let mut cases = Vec::new();
    for (dims, n) in EMULATED_SIZES {
        for dtype in [Dtype::F32, Dtype::F16, Dtype::Bf16] {
            let inputs = kernel
                .inputs
                .iter()
                .enumerate()
                .map(|(i, input)| {
                    let len = if i == w { dims.k } else { n * dims.len(input.ty) };
                    emu::rounded(values(len, i as u64 + 1), dtype)
                })
                .collect();
            cases.push(emu::Case {
                which: 0,
                n,
                dims,
                inputs,
                dtype,
                scaled: None,
                misaligned: false,
            });
        }
    }
    support::report(compare_emulated(
        "shared",
        &[("shared".into(), kernel)],
        cases,
        false,
    ));
}

/// Integer inputs (a class index per image) and shared inputs: the CUDA writer reads them, NVRTC
/// compiles them, and inputs of other storage types are refused by the writer.
#[test]
fn integer_and_shared_inputs_compile_to_ptx() {
    let (kernel, _) =
        support::kernel_sharing("cam p(A: [k,h,w], W: [k], t: []) = relu(sum[k](W * A)) * t", "W");
    let mut variant = vec![Dtype::F32; kernel.inputs.len()];
    let t = kernel
        .inputs
        .iter()
        .position(|i| i.name == "t")
        .expect("t is read");
    variant[t] = Dtype::I64;
    let source = cuda::write(&kernel, &[variant.clone()]).expect("writes");
    assert!(source.text.contains("long long"), "{}", source.text);
    variant[t] = Dtype::U8;
    assert!(matches!(
        cuda::write(&kernel, &[variant.clone()]),
        Err(Error::VariantDtype { .. })
    ));
    if !nvrtc_or_skip("integer_and_shared_inputs_compile_to_ptx") {
        return;
    }
    let mut variants = Vec::new();
    for dtype in [Dtype::I64, Dtype::I32] {
        variant[t] = dtype;
        variants.push(variant.clone());
    }
    support::report(check_ptx("p", &kernel, &variants).err().into_iter().collect());
}

/// On a GPU, inputs already in device memory (as a torch CUDA tensor's are) run on the caller's
/// stream and give the maps, bit for bit, and the non-finite counts that the same executor gives
/// from host memory: post-processed in the kernel, and raw as computed.
#[test]
fn on_a_gpu_tensors_in_device_memory_give_the_maps_of_host_memory() {
    if !gpu_or_skip("on_a_gpu_tensors_in_device_memory_give_the_maps_of_host_memory") {
        return;
    }
    use camc_runtime::exec::cuda::DeviceTensor;
    use cudarc::driver::{CudaContext, DevicePtr};
    let ctx = CudaContext::new(0).expect("GPU 0");
    let stream = ctx.new_stream().expect("a stream");
    let (dims, n, size) = (Dims::new(64, 1, 7, 7), 5, [20usize, 23]);
    let mut failures = Vec::new();
    for (name, kernel) in stdlib_kernels() {
        let mut inputs = inputs_for(&kernel, dims, n);
        inputs[0][dims.len(kernel.inputs[0].ty) + 3] = f32::NAN;
        let data: Vec<Data> = inputs.iter().map(|d| Data::F32(d)).collect();
        let batch = Batch::new(n, data);
        let on_device: Vec<_> = inputs
            .iter()
            .map(|values| stream.clone_htod(values).expect("copied to the GPU"))
            .collect();
        for outputs in [Outputs::processed(size.to_vec()), Outputs::untouched()] {
            let mut gpu = CudaExecutor::new(&kernel, dims, outputs.clone()).expect("opens the GPU");
            let (raw_len, processed_len) = gpu.map_lens();
            let per_image = raw_len + processed_len;
            let mut host = vec![0.0f32; n * per_image];
            let mut host_bad = vec![0usize; n];
            let (raw, processed): (&mut [f32], &mut [f32]) = if outputs.raw {
                (&mut host, &mut [])
            } else {
                (&mut [], &mut host)
            };
            gpu.run_into(&batch, raw, processed, &mut host_bad)
                .expect("host run");
            let out = stream
                .alloc_zeros::<f32>(n * per_image)
                .expect("output on the GPU");
            let bad = stream.alloc_zeros::<i32>(n).expect("counts on the GPU");
            {
                let guards: Vec<_> = on_device.iter().map(|d| d.device_ptr(&stream)).collect();
                let tensors: Vec<DeviceTensor> = guards
                    .iter()
                    .zip(&inputs)
                    .map(|((ptr, _), values)| DeviceTensor {
                        ptr: *ptr,
                        dtype: Dtype::F32,
                        len: values.len(),
                    })
                    .collect();
                let (out_ptr, _out_guard) = out.device_ptr(&stream);
                let (bad_ptr, _bad_guard) = bad.device_ptr(&stream);
                let target = DeviceTensor {
                    ptr: out_ptr,
                    dtype: Dtype::F32,
                    len: n * per_image,
                };
                let counts = if outputs.raw { 0 } else { bad_ptr };
                // SAFETY: every buffer is a live allocation of this context of the stated length,
                // and is read only after the stream has been synchronized below.
                if let Err(e) =
                    unsafe { gpu.run_on_device(n, &tensors, target, counts, stream.cu_stream() as u64) }
                {
                    failures.push(format!("{name} {outputs:?}: {e}"));
                    continue;
                }
            }
            stream.synchronize().expect("the kernel ran");
            let got = stream.clone_dtoh(&out).expect("copied back");
            let got_bad = stream.clone_dtoh(&bad).expect("copied back");
            let same = got.iter().zip(&host).all(|(a, b)| a.to_bits() == b.to_bits());
            let counts_agree = outputs.raw || got_bad.iter().zip(&host_bad).all(|(&a, &b)| a as usize == b);
            if !same || !counts_agree {
                failures.push(format!(
                    "{name} {outputs:?}: device memory differs from host memory"
                ));
            }
        }
    }
    support::report(failures);
}

/// Backward kernels (outputs typed like an input, not a map) in the CUDA writer, emulated,
/// against the interpreter.
#[test]
fn emulated_on_the_cpu_backward_kernels_match_the_interpreter() {
    if !gxx_or_skip("emulated_on_the_cpu_backward_kernels_match_the_interpreter") {
        return;
    }
    let kernels: Vec<(String, Kernel)> = support::gradients::backward_kernels()
        .into_iter()
        .map(|k| (k.name.clone(), k))
        .collect();
    let mut cases = Vec::new();
    for (which, (_, kernel)) in kernels.iter().enumerate() {
        for (dims, n) in [EMULATED_SIZES[0], EMULATED_SIZES[1]] {
            cases.push(emu::Case {
                which,
                n,
                dims,
                inputs: inputs_for(kernel, dims, n),
                dtype: Dtype::F32,
                scaled: None,
                misaligned: false,
            });
        }
    }
    support::report(compare_emulated("backward", &kernels, cases, false));
}

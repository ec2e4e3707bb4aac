//! The CPU backend (Cranelift JIT) against the reference interpreter: every stdlib method on
//! realistic inputs, 3-D layers, f16/bf16 inputs, thousands of random well-typed programs
//! (NaN and infinities included), and snapshots of the CLIF of every stdlib method
//! (tests/out/clif/stdlib).

mod support;

use camc_compiler::axes::Axis;
use camc_compiler::codegen::clif;
use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use camc_runtime::batch::{Batch, Data};
use camc_runtime::exec::cpu::CpuExecutor;
use camc_runtime::exec::interp::InterpExecutor;
use camc_runtime::exec::{ExecError, Executor, Outputs};
use camc_runtime::postprocess::host_maps;
use proptest::prelude::*;
use support::{gen, kernel};

/// A small deterministic generator (the tests must not depend on a crate's random streams).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 11
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 29) as f32 / (1u64 << 24) as f32
    }

    fn signed(&mut self) -> f32 {
        self.unit() * 4.0 - 2.0
    }
}

/// How the values of an input are drawn.
#[derive(Copy, Clone, PartialEq)]
enum Style {
    /// Like real activations: non-negative, half zeros, channel 0 dead, channel 1 constant.
    Activations,
    /// Signed, some exact zeros.
    Signed,
    /// Signed, with NaN, ±inf, ±0 and huge values mixed in.
    Specials,
}

fn values(rng: &mut Rng, count: usize, per_channel: usize, style: Style) -> Vec<f32> {
    (0..count)
        .map(|i| {
            let channel = i / per_channel.max(1);
            match style {
                Style::Activations if channel == 0 => 0.0,
                Style::Activations if channel == 1 => 0.75,
                Style::Activations => (rng.signed() * 2.0).max(0.0),
                Style::Signed if rng.next().is_multiple_of(6) => 0.0,
                Style::Signed => rng.signed(),
                Style::Specials => match rng.next() % 12 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => f32::NEG_INFINITY,
                    3 => -0.0,
                    4 => 0.0,
                    5 => 3e38,
                    _ => rng.signed(),
                },
            }
        })
        .collect()
}

/// Inputs for `n` images, by parameter name: `A` looks like activations, everything else is
/// signed (`Specials` everywhere when asked).
fn inputs(kernel: &Kernel, dims: Dims, n: usize, seed: u64, specials: bool) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    kernel
        .inputs
        .iter()
        .map(|input| {
            let len = dims.len(input.ty);
            let per_channel = if input.ty.contains(camc_compiler::axes::Axis::K) {
                len / dims.k
            } else {
                len
            };
            let style = match (specials, input.name.as_str()) {
                (true, _) => Style::Specials,
                (false, "A") => Style::Activations,
                _ => Style::Signed,
            };
            if input.name == "target" {
                return support::class_indices(n, dims.c, seed);
            }
            (0..support::copies(input, n))
                .flat_map(|_| values(&mut rng, len, per_channel, style))
                .collect()
        })
        .collect()
}

fn run(executor: &mut dyn Executor, kernel: &Kernel, dims: Dims, data: &[Vec<f32>], n: usize) -> Vec<f32> {
    let batch = Batch {
        files: Vec::new(),
        n,
        inputs: data.iter().map(|d| Data::F32(d)).collect(),
    };
    let mut out = vec![f32::NAN; n * dims.len(kernel.output_ty())];
    support::run_raw(executor, &batch, &mut out).expect("runs");
    out
}

/// docs/run.md: 1e-5 relative, 1e-6 absolute; NaN matches NaN, infinities match exactly.
fn close(a: f32, b: f32, relative: f32, absolute: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= absolute.max(relative * a.abs().max(b.abs()))
}

/// The first index where the CPU result differs from the interpreter's.
fn compare(
    kernel: &Kernel,
    dims: Dims,
    n: usize,
    seed: u64,
    specials: bool,
    tolerance: (f32, f32),
) -> Result<(), String> {
    let data = inputs(kernel, dims, n, seed, specials);
    let expected = run(
        &mut InterpExecutor::new(kernel, dims, Outputs::untouched()).expect("valid outputs"),
        kernel,
        dims,
        &data,
        n,
    );
    let mut cpu = CpuExecutor::new(kernel, dims, Outputs::untouched()).map_err(|e| e.to_string())?;
    let actual = run(&mut cpu, kernel, dims, &data, n);
    match (0..expected.len()).find(|&i| !close(expected[i], actual[i], tolerance.0, tolerance.1)) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{} at {dims:?}: element {i}: interpreter {} vs cpu {}",
            kernel.name, expected[i], actual[i]
        )),
    }
}

const TOLERANCE: (f32, f32) = (1e-5, 1e-6);

/// Shapes with axes that are not multiples of 4, 1×1 maps, k = 1 and a ResNet-like layer; one
/// class to 1000 for the programs over the class axis.
const SHAPES: [Dims; 7] = [
    Dims::new(1, 1, 1, 1),
    Dims::new(1, 1, 7, 7).with_classes(3),
    Dims::new(3, 1, 5, 3).with_classes(10),
    Dims::new(5, 1, 1, 9).with_classes(2),
    Dims::new(16, 1, 4, 4).with_classes(7),
    Dims::new(64, 1, 7, 7).with_classes(10),
    Dims::new(2048, 1, 7, 7).with_classes(1000),
];

#[test]
fn every_stdlib_method_agrees_with_the_interpreter() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for name in camc_compiler::stdlib::names() {
        let kernel = support::stdlib_kernel(name, Level::Exact);
        for (i, dims) in SHAPES.iter().enumerate() {
            let n = if dims.k > 100 { 2 } else { 4 };
            if let Err(e) = compare(&kernel, *dims, n, i as u64 + 7, false, TOLERANCE) {
                failures.push(e);
            }
            checked += 1;
        }
    }
    assert!(checked >= 13 * SHAPES.len());
    support::report(failures);
}

#[test]
fn three_dimensional_layers_agree_with_the_interpreter() {
    let bodies = [
        "relu(sum[k](mean[d,h,w](G) * A))",
        "relu(sum[k](sum[d,h,w](where(G != 0, G*G / (2*G*G + sum[d,h,w](A)*G*G*G + 1e-6), 0) * relu(G)) * A))",
        "max[k](A * G) - min[k](A) + norm[k](G)",
        "sum[k](mean[d](A) * sum[h](G)) + std[d,h,w](sum[k](A))",
        "normalize[d,h,w](sum[k](softmax[k](mean[d,h,w](G)) * A))",
        "pc1[k](A) + sum[k,d](A) * 0.5",
        "sum[k](max[d,w](A) * min[h](G)) + norm[d](sum[k](G))",
    ];
    let shapes = [
        Dims::new(3, 2, 3, 5),
        Dims::new(1, 3, 1, 1),
        Dims::new(8, 4, 4, 4),
        Dims::new(2, 5, 2, 7),
    ];
    let mut failures = Vec::new();
    for body in bodies {
        let source = format!("cam c(A: [k,d,h,w], G: [k,d,h,w]) = {body}");
        let kernel = kernel(&source, Level::Exact);
        for (i, dims) in shapes.iter().enumerate() {
            if let Err(e) = compare(&kernel, *dims, 3, i as u64, false, TOLERANCE) {
                failures.push(format!("{body}: {e}"));
            }
        }
    }
    support::report(failures);
}

#[test]
fn half_precision_inputs_are_read_as_their_f32_values() {
    let kernel = support::stdlib_kernel("gradcampp", Level::Exact);
    let dims = Dims::new(6, 1, 5, 5);
    let n = 3;
    let data = inputs(&kernel, dims, n, 11, false);
    let halves: Vec<Vec<half::f16>> = data
        .iter()
        .map(|d| d.iter().map(|&x| half::f16::from_f32(x)).collect())
        .collect();
    let brains: Vec<Vec<half::bf16>> = data
        .iter()
        .map(|d| d.iter().map(|&x| half::bf16::from_f32(x)).collect())
        .collect();
    let mut cpu = CpuExecutor::new(&kernel, dims, Outputs::untouched()).expect("compiles");
    let out_len = n * dims.len(kernel.output_ty());
    for (label, batch) in [
        (
            "f16",
            Batch {
                files: Vec::new(),
                n,
                inputs: halves.iter().map(|d| Data::F16(d)).collect(),
            },
        ),
        (
            "bf16",
            Batch {
                files: Vec::new(),
                n,
                inputs: brains.iter().map(|d| Data::Bf16(d)).collect(),
            },
        ),
    ] {
        let widened: Vec<Vec<f32>> = batch.inputs.iter().map(|d| d.to_f32().into_owned()).collect();
        let expected = run(
            &mut InterpExecutor::new(&kernel, dims, Outputs::untouched()).expect("valid outputs"),
            &kernel,
            dims,
            &widened,
            n,
        );
        let mut actual = vec![0.0; out_len];
        support::run_raw(&mut cpu, &batch, &mut actual).expect("runs");
        for (e, a) in expected.iter().zip(&actual) {
            assert!(close(*e, *a, TOLERANCE.0, TOLERANCE.1), "{label}: {e} vs {a}");
        }
    }
}

#[test]
fn bad_batches_and_empty_axes_are_errors_not_crashes() {
    let kernel = support::stdlib_kernel("gradcam", Level::Exact);
    let dims = Dims::new(2, 1, 2, 2);
    let mut cpu = CpuExecutor::new(&kernel, dims, Outputs::untouched()).expect("compiles");
    let a = vec![1.0f32; 8];
    let mut out = vec![0.0; 4];
    let short = Batch {
        files: Vec::new(),
        n: 1,
        inputs: vec![Data::F32(&a[..7]), Data::F32(&a)],
    };
    assert!(matches!(
        support::run_raw(&mut cpu, &short, &mut out),
        Err(ExecError::InputLength { .. })
    ));
    let missing = Batch {
        files: Vec::new(),
        n: 1,
        inputs: vec![Data::F32(&a)],
    };
    assert!(matches!(
        support::run_raw(&mut cpu, &missing, &mut out),
        Err(ExecError::InputCount { .. })
    ));
    let good = Batch {
        files: Vec::new(),
        n: 1,
        inputs: vec![Data::F32(&a), Data::F32(&a)],
    };
    assert!(matches!(
        support::run_raw(&mut cpu, &good, &mut out[..3]),
        Err(ExecError::InputLength { .. })
    ));
    support::run_raw(&mut cpu, &good, &mut out).expect("runs");
    assert_eq!(out, [2.0; 4], "mean(G)=1 per channel, two channels of ones");
    let empty = Batch {
        files: Vec::new(),
        n: 0,
        inputs: vec![Data::F32(&[]), Data::F32(&[])],
    };
    support::run_raw(&mut cpu, &empty, &mut []).expect("an empty batch is fine");
    match CpuExecutor::new(&kernel, Dims::new(0, 1, 7, 7), Outputs::untouched()) {
        Err(ExecError::Backend {
            backend: "cpu",
            message,
        }) => assert!(message.contains("at least one"), "{message}"),
        other => panic!("expected an error, got {:?}", other.err()),
    }
}

#[test]
fn clif_snapshots_of_every_stdlib_method() {
    let mut failures = Vec::new();
    for name in camc_compiler::stdlib::names() {
        let kernel = support::stdlib_kernel(name, Level::Exact);
        // ImageNet's 1000 classes where the program has a class axis (Recipro-CAM's head).
        let classes = kernel.nodes.iter().any(|n| n.ty.contains(Axis::C));
        let sizes = Dims::new(2048, 1, 7, 7).with_classes(if classes { 1000 } else { 1 });
        let info = camc_compiler::ir::validate(&kernel).expect("valid");
        let lowered = clif::lower(&kernel, &info, sizes, clif::default_target()).expect("lowers");
        if let Err(e) = support::snapshot(
            &format!("clif/stdlib/{name}.clif"),
            &clif::text(&kernel, &lowered, sizes),
        ) {
            failures.push(e);
        }
    }
    support::report(failures);
}

/// Loops over the channels in a kernel's CLIF: loop back-edges compare with the bound `k`.
fn channel_loops(name: &str, k: usize) -> usize {
    let sizes = Dims::new(k, 1, 7, 7);
    let kernel = support::stdlib_kernel(name, Level::Exact);
    let info = camc_compiler::ir::validate(&kernel).expect("valid");
    let lowered = clif::lower(&kernel, &info, sizes, clif::default_target()).expect("lowers");
    let text = clif::text(&kernel, &lowered, sizes);
    let bound = format!(" = {k}");
    text.lines()
        .filter(|l| l.contains("icmp slt") && l.trim_end().ends_with(&bound))
        .count()
}

#[test]
fn per_channel_stages_share_one_loop_over_k() {
    // Grad-CAM: mean[h,w](G) and the final sum[k] in one loop; Grad-CAM++: its three
    // per-channel steps in one loop. fem's std needs the whole map first (a helper call).
    assert_eq!(channel_loops("gradcam", 2039), 1);
    assert_eq!(channel_loops("gradcampp", 2039), 1);
    assert_eq!(channel_loops("xgradcam", 2039), 1);
}

#[test]
fn emit_clif_prints_the_snapshot() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_camc"))
        .args(["emit", "gradcam", "--target", "clif"])
        .output()
        .expect("camc runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected = std::fs::read_to_string(support::root().join("tests/out/clif/stdlib/gradcam.clif"))
        .expect("snapshot");
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    for bad in [["--dims", "4,0,7"], ["--size", "0,224"], ["--size", "224"]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_camc"))
            .args(["emit", "gradcam", "--target", "clif"])
            .args(bad)
            .output()
            .expect("camc runs");
        assert_eq!(output.status.code(), Some(2), "{bad:?} is a usage error");
    }
}

#[test]
fn emit_clif_with_a_size_prints_the_post_processing_snapshot() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_camc"))
        .args([
            "emit", "gradcam", "--target", "clif", "--dims", "2048,7,7", "--size", "224,224",
        ])
        .output()
        .expect("camc runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    if let Err(e) = support::snapshot("clif/scaled/gradcam_224x224.clif", &text) {
        panic!("{e}");
    }
    // The taps: 224 along w and 224 along h, 16 bytes each.
    assert!(text.contains("= 7168 bytes of resize taps"), "{text}");
}

#[test]
fn post_processing_needs_a_two_dimensional_result() {
    let gradcam = support::stdlib_kernel("gradcam", Level::Exact);
    let sizes = Dims::new(8, 1, 7, 7);
    let info = camc_compiler::ir::validate(&gradcam).expect("valid");
    assert!(clif::lower_scaled(&gradcam, &info, sizes, [224, 224], false, clif::default_target()).is_ok());
    let volume = kernel("cam volume(A: [k,d,h,w]) { sum[k](A) }", Level::Exact);
    let volume_info = camc_compiler::ir::validate(&volume).expect("valid");
    match clif::lower_scaled(
        &volume,
        &volume_info,
        Dims::new(8, 3, 7, 7),
        [224, 224],
        false,
        clif::default_target(),
    ) {
        Err(clif::ClifError::NotAMap(_)) => {}
        other => panic!("expected NotAMap, got {:?}", other.err()),
    }
    match clif::lower_scaled(
        &gradcam,
        &info,
        sizes,
        [1 << 20, 1 << 20],
        false,
        clif::default_target(),
    ) {
        Err(clif::ClifError::TooLarge(_)) => {}
        other => panic!("expected TooLarge, got {:?}", other.err()),
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_programs_agree_with_the_interpreter(program in gen::program(3), k in 1usize..6, h in 1usize..6, w in 1usize..10, c in 1usize..4, seed in any::<u64>()) {
        let kernel = kernel(&program, Level::Exact);
        let dims = Dims::new(k, 1, h, w).with_classes(c);
        if let Err(e) = compare(&kernel, dims, 2, seed, false, TOLERANCE) {
            prop_assert!(false, "{}\n{}", program, e);
        }
    }

    #[test]
    fn random_programs_post_processed_in_the_function_equal_the_host_pass(program in gen::program(3), k in 1usize..4, h in 1usize..5, w in 1usize..6, oh in 1usize..9, ow in 1usize..9, seed in any::<u64>()) {
        let kernel = kernel(&program, Level::Exact);
        if let Err(e) = fused_equals_host(&kernel, Dims::new(k, 1, h, w), [oh, ow], seed, true) {
            prop_assert!(false, "{}\n{}", program, e);
        }
    }

    #[test]
    fn random_programs_on_nan_and_infinities_agree(program in gen::program(3), k in 1usize..4, h in 1usize..4, w in 1usize..7, seed in any::<u64>()) {
        let kernel = kernel(&program, Level::Exact);
        let dims = Dims::new(k, 1, h, w);
        if let Err(e) = compare(&kernel, dims, 2, seed, true, TOLERANCE) {
            prop_assert!(false, "{}\n{}", program, e);
        }
    }
}

/// The post-processing compiled into the function (per image right after the kernel, taps
/// computed once) gives the same bits and non-finite counts as the raw kernel followed by the
/// host's post-processing, for every stdlib method, up- and down-sizing, same-size axes, 1×1
/// maps and inputs with NaN and infinities; asked for both maps, the function's raw map is the
/// sanitized raw map, bit for bit.
#[test]
fn post_processing_per_image_equals_the_host_pass() {
    let mut failures = Vec::new();
    for name in camc_compiler::stdlib::names() {
        let kernel = support::stdlib_kernel(name, Level::Exact);
        for (dims, size, specials) in [
            (Dims::new(7, 1, 7, 7), [224, 224], false),
            (Dims::new(5, 1, 3, 4), [3, 9], true),
            (Dims::new(3, 1, 9, 8), [4, 8], false),
            (Dims::new(2, 1, 1, 1), [5, 6], true),
        ] {
            if let Err(e) = fused_equals_host(&kernel, dims, size, 7, specials) {
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    support::report(failures);
}

/// The function with the post-processing compiled in, alone and keeping the raw map, against
/// the raw function followed by the host's post-processing: the same bits and counts.
fn fused_equals_host(
    kernel: &Kernel,
    dims: Dims,
    size: [usize; 2],
    seed: u64,
    specials: bool,
) -> Result<(), String> {
    let n = 3;
    let data = inputs(kernel, dims, n, seed, specials);
    let mut cpu = CpuExecutor::new(kernel, dims, Outputs::untouched()).map_err(|e| e.to_string())?;
    let mut raw = run(&mut cpu, kernel, dims, &data, n);
    let host = Outputs::both(size.to_vec());
    let map_len = size[0] * size[1];
    let mut want = Vec::with_capacity(n * map_len);
    let mut want_bad = Vec::new();
    let mut processed = Vec::new();
    for image in raw.chunks_mut(dims.h * dims.w) {
        let maps = host_maps(image, &[dims.h, dims.w], &host, &mut processed);
        want_bad.push(maps.nonfinite);
        want.extend_from_slice(maps.processed);
    }
    let batch = Batch::new(n, data.iter().map(|d| Data::F32(d)).collect());
    // The same bits, but for the sign of a zero: which of +0 and -0 a min-max takes as the
    // minimum depends on the order the values are compared in, and the function compares four
    // lanes at a time.
    let bits = |a: &[f32], b: &[f32]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(a, b)| a.to_bits() == b.to_bits() || (*a == 0.0 && *b == 0.0))
    };
    let mut fused =
        CpuExecutor::new(kernel, dims, Outputs::processed(size.to_vec())).map_err(|e| e.to_string())?;
    let (mut got, mut bad) = (vec![f32::NAN; n * map_len], vec![usize::MAX; n]);
    fused
        .run_into(&batch, &mut [], &mut got, &mut bad)
        .map_err(|e| e.to_string())?;
    if !bits(&want, &got) || bad != want_bad {
        return Err(format!(
            "{dims:?} -> {size:?}: counts {bad:?} vs {want_bad:?}, or the maps differ"
        ));
    }
    let mut both = CpuExecutor::new(kernel, dims, host.clone()).map_err(|e| e.to_string())?;
    let (mut both_raw, mut both_got, mut both_bad) = (
        vec![f32::NAN; raw.len()],
        vec![f32::NAN; n * map_len],
        vec![usize::MAX; n],
    );
    both.run_into(&batch, &mut both_raw, &mut both_got, &mut both_bad)
        .map_err(|e| e.to_string())?;
    if !bits(&raw, &both_raw) || !bits(&want, &both_got) || both_bad != want_bad {
        return Err(format!("{dims:?} -> {size:?}: both maps differ from the host's"));
    }
    Ok(())
}

/// Sums of a product that are matrix products run as one GEMM call (`camc_contract`), on any
/// layout that flattens to a matrix, and agree with the interpreter; a layout that does not
/// flatten keeps the loop nest.
#[test]
fn contractions_run_as_a_gemm_and_agree_with_the_interpreter() {
    let cases = [
        ("cam t(A: [k,h,w], l: shared [c,k]) = max[c](sum[k](l * A))", true),
        ("cam t(A: [k,h,w], l: shared [c,k]) = sum[c](sum[k](A * l))", true),
        ("cam t(x: [k,h], y: [k,w]) = sum[k](x * y)", true),
        ("cam t(x: [c,h,w], y: [c,k]) = max[k](sum[c](x * y))", true),
        ("cam t(x: [c,k,w], y: [c,k,h]) = sum[c,k](x * y)", true),
        // Rows (c, h) of x are not one stride apart: the loop nest.
        ("cam t(x: [c,k,h], y: [k,w]) = sum[c](sum[k](x * y))", false),
        // A matrix-vector product (weights per channel): the loop nest.
        ("cam t(A: [k,h,w], v: [k]) = sum[k](v * A)", false),
    ];
    let shapes = [
        Dims::new(3, 2, 5, 4).with_classes(7),
        Dims::new(64, 1, 7, 7).with_classes(10),
        Dims::new(300, 3, 2, 9).with_classes(40),
    ];
    let mut failures = Vec::new();
    for (source, gemm) in cases {
        let kernel = kernel(source, Level::Exact);
        for (i, dims) in shapes.iter().enumerate() {
            let info = camc_compiler::ir::validate(&kernel).expect("valid");
            let lowered = clif::lower(&kernel, &info, *dims, clif::default_target()).expect("lowers");
            let calls = lowered.imports.iter().any(|i| i.name == clif::CONTRACT);
            if calls != gemm {
                failures.push(format!("{source} at {dims:?}: camc_contract called: {calls}"));
            }
            for specials in [false, true] {
                if let Err(e) = compare(&kernel, *dims, 3, i as u64 + 3, specials, TOLERANCE) {
                    failures.push(format!("{source} (specials: {specials}): {e}"));
                }
            }
        }
    }
    support::report(failures);
    // ResNet-50's head on a 14×14 layer (448-pixel inputs): the product [c,k,h,w] (401M values)
    // is never formed, so the kernel compiles; the same product in a loop nest is too large.
    let big = Dims::new(2048, 1, 14, 14).with_classes(1000);
    let lower = |kernel: &Kernel| {
        let info = camc_compiler::ir::validate(kernel).expect("valid");
        clif::lower(kernel, &info, big, clif::default_target()).map(|_| ())
    };
    assert!(lower(&support::stdlib_kernel("reciprocam", Level::Exact)).is_ok());
    let looped = kernel(
        "cam t(A: [k,h,w], l: shared [c,k]) = max[c](sum[k](relu(l * A)))",
        Level::Exact,
    );
    match lower(&looped) {
        Err(clif::ClifError::TooLarge(message)) => assert!(message.contains("401408000"), "{message}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

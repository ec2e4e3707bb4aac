//! The one execution path: a compiled program run over tensors in host memory gives the same
//! maps, bit for bit, as the same program over a cache file holding the same numbers — raw,
//! post-processed and both at once, f32 and f16, on the interpreter and the CPU JIT — and what
//! an executor cannot compute is refused when it is built.

mod support;

use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use camc_runtime::batch::{Batch, Data};
use camc_runtime::cache::{Binding, Cache};
use camc_runtime::exec::cpu::CpuExecutor;
use camc_runtime::exec::interp::InterpExecutor;
use camc_runtime::exec::{ExecError, Executor, Outputs};
use camc_runtime::run::Run;
use support::caches::*;

const N: usize = 5;
const DIMS: Dims = Dims::new(6, 1, 4, 5);

fn executor(backend: &str, kernel: &Kernel, outputs: Outputs) -> Box<dyn Executor> {
    match backend {
        "cpu" => Box::new(CpuExecutor::new(kernel, DIMS, outputs).expect("compiles")),
        _ => Box::new(InterpExecutor::new(kernel, DIMS, outputs).expect("valid outputs")),
    }
}

/// Every image's raw and processed maps and non-finite counts, from a cache in batches of 2.
fn over_cache(cache: &Cache, kernel: &Kernel, mut executor: Box<dyn Executor>) -> (Vec<f32>, Vec<f32>) {
    let binding = Binding::new(cache, kernel).expect("binds");
    let (mut raw, mut processed) = (Vec::new(), Vec::new());
    let job = Run {
        binding: &binding,
        batch: 2,
        strict: false,
    };
    job.execute_in_order(
        executor.as_mut(),
        |_, r, p| {
            raw.extend_from_slice(r);
            processed.extend_from_slice(p);
            Ok(())
        },
        |_| {},
    )
    .expect("runs over the cache");
    (raw, processed)
}

/// The same from borrowed host slices, in one batch.
fn over_memory(batch: &Batch<'_>, mut executor: Box<dyn Executor>) -> (Vec<f32>, Vec<f32>) {
    let (raw_len, processed_len) = executor.map_lens();
    let mut raw = vec![f32::NAN; batch.n * raw_len];
    let mut processed = vec![f32::NAN; batch.n * processed_len];
    let mut nonfinite = vec![usize::MAX; batch.n];
    executor
        .run_into(batch, &mut raw, &mut processed, &mut nonfinite)
        .expect("runs over memory");
    assert!(
        nonfinite.iter().all(|&c| c == 0),
        "finite inputs give finite maps"
    );
    (raw, processed)
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn host_memory_and_a_cache_with_the_same_numbers_give_the_same_maps() {
    let dir = temp_dir();
    let shape = [N, DIMS.k, DIMS.h, DIMS.w];
    let len = N * DIMS.k * DIMS.h * DIMS.w;
    let (a, g) = (noise(1, len), noise(2, len));
    // The host copies hold exactly what the caches store.
    let a16: Vec<half::f16> = a.iter().map(|&x| half::f16::from_f32(x)).collect();
    let g16: Vec<half::f16> = g.iter().map(|&x| half::f16::from_f32(x)).collect();
    let f32_path = dir.path().join("f32.safetensors");
    let f16_path = dir.path().join("f16.safetensors");
    write_safetensors(
        &f32_path,
        &[("A", f32s(&shape, &a)), ("G", f32s(&shape, &g))],
        &[],
    );
    write_safetensors(
        &f16_path,
        &[("A", f16s(&shape, &a)), ("G", f16s(&shape, &g))],
        &[],
    );
    let caches = [
        (
            "f32",
            Cache::open(path_str(&f32_path)).expect("opens"),
            [Data::F32(&a), Data::F32(&g)],
        ),
        (
            "f16",
            Cache::open(path_str(&f16_path)).expect("opens"),
            [Data::F16(&a16), Data::F16(&g16)],
        ),
    ];
    let mut failures = Vec::new();
    for method in ["gradcam", "gradcampp", "layercam", "eigencam"] {
        let kernel = support::stdlib_kernel(method, Level::Exact);
        for (label, cache, data) in &caches {
            let names: Vec<&str> = kernel.inputs.iter().map(|i| i.name.as_str()).collect();
            let inputs = names
                .iter()
                .map(|&name| if name == "A" { data[0] } else { data[1] })
                .collect();
            let batch = Batch::new(N, inputs);
            for backend in ["interp", "cpu"] {
                for outputs in [
                    Outputs::raw(),
                    Outputs::processed(vec![9, 7]),
                    Outputs::both(vec![9, 7]),
                ] {
                    let from_cache = over_cache(cache, &kernel, executor(backend, &kernel, outputs.clone()));
                    let from_memory = over_memory(&batch, executor(backend, &kernel, outputs.clone()));
                    let (raw_len, processed_len) = outputs.lens(&kernel, DIMS);
                    let expected = (N * raw_len, N * processed_len);
                    if (from_cache.0.len(), from_cache.1.len()) != expected {
                        failures.push(format!("{method} {label} {backend} {outputs:?}: wrong lengths"));
                    }
                    if bits(&from_cache.0) != bits(&from_memory.0)
                        || bits(&from_cache.1) != bits(&from_memory.1)
                    {
                        failures.push(format!("{method} {label} {backend} {outputs:?}: maps differ"));
                    }
                }
            }
        }
    }
    support::report(failures);
}

#[test]
fn both_maps_at_once_equal_each_map_asked_for_alone() {
    let len = N * DIMS.k * DIMS.h * DIMS.w;
    let (a, g) = (noise(3, len), noise(4, len));
    let mut failures = Vec::new();
    for method in camc_compiler::stdlib::names() {
        let kernel = support::stdlib_kernel(method, Level::Exact);
        if kernel.inputs.iter().any(|i| i.name != "A" && i.name != "G") {
            continue;
        }
        let inputs = kernel
            .inputs
            .iter()
            .map(|i| Data::F32(if i.name == "A" { &a } else { &g }))
            .collect();
        let batch = Batch::new(N, inputs);
        for backend in ["interp", "cpu"] {
            let size = vec![11, 3];
            let (raw, _) = over_memory(&batch, executor(backend, &kernel, Outputs::raw()));
            let (_, processed) = over_memory(
                &batch,
                executor(backend, &kernel, Outputs::processed(size.clone())),
            );
            let both = over_memory(&batch, executor(backend, &kernel, Outputs::both(size)));
            if bits(&raw) != bits(&both.0) || bits(&processed) != bits(&both.1) {
                failures.push(format!("{method} {backend}: both maps differ from each alone"));
            }
        }
    }
    support::report(failures);
}

#[test]
fn outputs_an_executor_cannot_compute_are_refused_when_it_is_built() {
    let gradcam = support::stdlib_kernel("gradcam", Level::Exact);
    let nothing = Outputs {
        raw: false,
        processed: None,
        keep_nonfinite: false,
    };
    let kept_and_processed = Outputs {
        keep_nonfinite: true,
        ..Outputs::both(vec![4, 4])
    };
    for outputs in [
        nothing,
        kept_and_processed,
        Outputs::processed(vec![2, 3, 4]),
        Outputs::processed(vec![0, 4]),
    ] {
        for result in [
            InterpExecutor::new(&gradcam, DIMS, outputs.clone()).map(drop),
            CpuExecutor::new(&gradcam, DIMS, outputs.clone()).map(drop),
        ] {
            assert!(
                matches!(result, Err(ExecError::Outputs(_))),
                "{outputs:?}: {result:?}"
            );
        }
    }
    // A 3-D program post-processed to a 2-D size keeps its depth; asked for as 2-D it is refused.
    let volume = support::kernel("cam volume(A: [k,d,h,w]) = sum[k](A)", Level::Exact);
    let dims = Dims::new(2, 3, 4, 4);
    assert!(CpuExecutor::new(&volume, dims, Outputs::processed(vec![3, 8, 8])).is_ok());
    assert!(matches!(
        CpuExecutor::new(&volume, dims, Outputs::processed(vec![8, 8])),
        Err(ExecError::Outputs(_))
    ));
}

#[test]
fn a_sink_error_stops_the_run_with_its_message() {
    let gradcam = support::stdlib_kernel("gradcam", Level::Exact);
    let len = N * DIMS.k * DIMS.h * DIMS.w;
    let a = noise(5, len);
    let batch = Batch::new(N, vec![Data::F32(&a), Data::F32(&a)]);
    for backend in ["interp", "cpu"] {
        let mut executor = executor(backend, &gradcam, Outputs::processed(vec![8, 8]));
        let err = executor
            .run(&batch, &|image, _| {
                if image == 3 {
                    Err("disk full".into())
                } else {
                    Ok(())
                }
            })
            .expect_err("the sink failed");
        assert!(
            matches!(&err, ExecError::Sink(m) if m == "disk full"),
            "{backend}: {err}"
        );
    }
}

/// The kernel's inputs: `a` for `A`, `other` for its other input.
fn inputs_in_order<'a>(kernel: &Kernel, a: Data<'a>, other: Data<'a>) -> Vec<Data<'a>> {
    kernel
        .inputs
        .iter()
        .map(|i| if i.name == "A" { a } else { other })
        .collect()
}

/// `relu(sum[k](W * A))` with `W: [k]` shared by all images (the language cannot declare a
/// shared parameter yet, so the input is marked in the IR).
fn weighted_by_shared() -> Kernel {
    support::kernel_sharing("cam p(A: [k,h,w], W: [k]) = relu(sum[k](W * A))", "W").0
}

/// The map by hand: f64 sums over channels, then ReLU.
fn weighted_by_hand(a: &[f32], w: &[f32]) -> Vec<f32> {
    let spatial = DIMS.h * DIMS.w;
    let mut out = Vec::new();
    for image in a.chunks(DIMS.k * spatial) {
        for s in 0..spatial {
            let sum: f64 = (0..DIMS.k)
                .map(|c| w[c] as f64 * image[c * spatial + s] as f64)
                .sum();
            out.push((sum as f32).max(0.0));
        }
    }
    out
}

#[test]
fn an_input_shared_by_all_images_is_read_once_for_every_image() {
    let kernel = weighted_by_shared();
    let a = noise(6, N * DIMS.k * DIMS.h * DIMS.w);
    let w = noise(7, DIMS.k);
    let w16: Vec<half::f16> = w.iter().map(|&x| half::f16::from_f32(x)).collect();
    let w_rounded: Vec<f32> = w16.iter().map(|x| x.to_f32()).collect();
    let order = |a, w| inputs_in_order(&kernel, a, w);
    for (label, weights, expected_w) in [
        ("f32", Data::F32(&w), w.clone()),
        ("f16", Data::F16(&w16), w_rounded),
    ] {
        let want = weighted_by_hand(&a, &expected_w);
        let batch = Batch::new(N, order(Data::F32(&a), weights));
        for backend in ["interp", "cpu"] {
            let (raw, _) = over_memory(&batch, executor(backend, &kernel, Outputs::raw()));
            assert_eq!(raw.len(), want.len());
            for (i, (got, want)) in raw.iter().zip(&want).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{label} {backend} {i}: {got} vs {want}"
                );
            }
        }
    }
    // A batch whose shared input has a value per image is refused, not misread.
    let per_image_w = noise(8, N * DIMS.k);
    let wrong = Batch::new(N, order(Data::F32(&a), Data::F32(&per_image_w)));
    let err = executor("cpu", &kernel, Outputs::raw())
        .run(&wrong, &|_, _| Ok(()))
        .expect_err("W has N copies");
    assert!(
        matches!(err, ExecError::InputLength { ref name, .. } if name == "W"),
        "{err}"
    );

    // From a cache: `W` without the image axis, `[k]`, in f16; the same maps as from memory.
    let dir = temp_dir();
    let path = dir.path().join("shared.safetensors");
    write_safetensors(
        &path,
        &[
            ("A", f32s(&[N, DIMS.k, DIMS.h, DIMS.w], &a)),
            ("W", f16s(&[DIMS.k], &w)),
        ],
        &[],
    );
    let cache = Cache::open(path_str(&path)).expect("opens");
    let batch = Batch::new(N, order(Data::F32(&a), Data::F16(&w16)));
    for backend in ["interp", "cpu"] {
        for outputs in [Outputs::raw(), Outputs::both(vec![6, 6])] {
            let from_cache = over_cache(&cache, &kernel, executor(backend, &kernel, outputs.clone()));
            let from_memory = over_memory(&batch, executor(backend, &kernel, outputs.clone()));
            assert_eq!(bits(&from_cache.0), bits(&from_memory.0), "{backend} {outputs:?}");
            assert_eq!(bits(&from_cache.1), bits(&from_memory.1), "{backend} {outputs:?}");
        }
    }
    // A cache whose `W` has the image axis does not bind to a shared input.
    let per_image = dir.path().join("per_image.safetensors");
    write_safetensors(
        &per_image,
        &[
            ("A", f32s(&[N, DIMS.k, DIMS.h, DIMS.w], &a)),
            ("W", f32s(&[N, DIMS.k], &noise(9, N * DIMS.k))),
        ],
        &[],
    );
    let cache = Cache::open(path_str(&per_image)).expect("opens");
    let err = Binding::new(&cache, &kernel).err().expect("W is [n,k], not [k]");
    assert!(err.to_string().contains("[6]"), "{err}");
}

#[test]
fn integer_inputs_are_read_as_floats() {
    // `t` an integer per image, e.g. a class index.
    let kernel = support::kernel("cam p(A: [k,h,w], t: []) = sum[k](A) * t", Level::Exact);
    let a = noise(10, N * DIMS.k * DIMS.h * DIMS.w);
    let t64: Vec<i64> = (0..N as i64).map(|i| 3 * i - 2).collect();
    let t32: Vec<i32> = t64.iter().map(|&t| t as i32).collect();
    let spatial = DIMS.h * DIMS.w;
    let mut want = Vec::new();
    for (image, &t) in a.chunks(DIMS.k * spatial).zip(&t64) {
        for s in 0..spatial {
            let sum: f64 = (0..DIMS.k).map(|c| image[c * spatial + s] as f64).sum();
            want.push(sum as f32 * t as f32);
        }
    }
    for targets in [Data::I64(&t64), Data::I32(&t32)] {
        let batch = Batch::new(N, inputs_in_order(&kernel, Data::F32(&a), targets));
        for backend in ["interp", "cpu"] {
            let (raw, _) = over_memory(&batch, executor(backend, &kernel, Outputs::raw()));
            assert_eq!(bits(&raw), bits(&want), "{backend} {:?}", targets.dtype());
        }
    }
}

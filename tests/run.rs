//! Caches, post-processing and `camc run`: resize against hand-computed values, every cache
//! error case, f16/bf16/npy/shards reading the same data, and the command end to end.

mod support;

use camc_runtime::cache::{Binding, Cache};
use camc_runtime::exec::Outputs;
use camc_runtime::postprocess::{host_maps, minmax, resize};
use std::path::Path;
use std::process::Output;
use support::caches::*;
use support::cli::{camc, stderr};
use support::kernel;

fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tolerance,
            "at {i}: {a} vs {e}\nactual {actual:?}\nexpected {expected:?}"
        );
    }
}

#[test]
fn resize_matches_half_pixel_values_by_hand() {
    // Upsampling [0,1] to 4: sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    assert_close(&resize(&[0.0, 1.0], &[2], &[4]), &[0.0, 0.25, 0.75, 1.0], 1e-7);
    // 3 → 5, scale 0.6: sources -0.2, 0.4, 1.0, 1.6, 2.2.
    assert_close(
        &resize(&[0.0, 10.0, 20.0], &[3], &[5]),
        &[0.0, 4.0, 10.0, 16.0, 20.0],
        1e-5,
    );
    // 4 → 2 averages neighbours: sources 0.5 and 2.5.
    assert_close(&resize(&[0.0, 1.0, 2.0, 3.0], &[4], &[2]), &[0.5, 2.5], 1e-7);
    // 2-D is separable: [[0,1],[2,3]] → 4×4 is 2·r_i + r_j with r = [0, .25, .75, 1].
    let out = resize(&[0.0, 1.0, 2.0, 3.0], &[2, 2], &[4, 4]);
    let r = [0.0, 0.25, 0.75, 1.0];
    let expected: Vec<f32> = (0..16).map(|i| 2.0 * r[i / 4] + r[i % 4]).collect();
    assert_close(&out, &expected, 1e-6);
    // Same size is the identity.
    let x = [3.0, -1.0, 7.5, 0.25, 9.0, 2.0];
    assert_eq!(resize(&x, &[2, 3], &[2, 3]), x);
}

#[test]
fn minmax_and_the_full_post_processing() {
    let mut x = [2.0, 4.0, 6.0];
    minmax(&mut x);
    assert_close(&x, &[0.0, 2.0 / (4.0 + 1e-7), 4.0 / (4.0 + 1e-7)], 1e-7);
    let mut constant = [5.0f32; 4];
    minmax(&mut constant);
    assert_eq!(
        constant, [0.0; 4],
        "a constant map becomes 0, like pytorch-grad-cam"
    );
    // [0, 2] → min-max [0, 1] → resize to 4 [0, .25, .75, 1] → min-max again.
    let mut raw = [10.0, 12.0];
    let (out, bad) = support::host_processed(&mut raw, &[1, 2], &[1, 4]);
    assert_eq!(bad, 0);
    assert_close(&out, &[0.0, 0.25, 0.75, 1.0], 1e-6);
    // Non-finite values become 0 and are counted.
    let mut raw = [f32::NAN, 1.0, f32::INFINITY];
    let mut processed = Vec::new();
    let maps = host_maps(&mut raw, &[1, 3], &Outputs::raw(), &mut processed);
    assert_eq!(maps.nonfinite, 2);
    assert_eq!(maps.raw, [0.0, 1.0, 0.0]);
}

const N: usize = 3;
const K: usize = 4;
const H: usize = 3;
const W: usize = 5;

fn activations() -> Vec<f32> {
    noise(1, N * K * H * W).iter().map(|v| v.max(0.0)).collect()
}

fn gradients() -> Vec<f32> {
    noise(2, N * K * H * W)
}

/// Grad-CAM by hand: relu(Σ_k mean_hw(G_k) A_k), per image.
fn gradcam_by_hand(a: &[f32], g: &[f32]) -> Vec<f32> {
    let hw = H * W;
    let mut out = vec![0.0f32; N * hw];
    for n in 0..N {
        for k in 0..K {
            let base = (n * K + k) * hw;
            let weight = g[base..base + hw].iter().sum::<f32>() / hw as f32;
            for p in 0..hw {
                out[n * hw + p] += weight * a[base + p];
            }
        }
    }
    out.iter().map(|v| v.max(0.0)).collect()
}

fn write_gradcam_cache(path: &Path, to: fn(&[usize], &[f32]) -> T) {
    let shape = [N, K, H, W];
    write_safetensors(
        path,
        &[("A", to(&shape, &activations())), ("G", to(&shape, &gradients()))],
        &[("image_size", "7,11")],
    );
}

fn run_ok(args: &[&str]) -> Output {
    let out = camc(args);
    assert_eq!(out.status.code(), Some(0), "camc {args:?}: {}", stderr(&out));
    out
}

/// `camc run gradcam --raw` on `cache` into `out` with `backend`, plus `extra` arguments.
fn run_raw_gradcam(cache: &Path, out: &Path, backend: &str, extra: &[&str]) {
    let mut args = vec![
        "run",
        "gradcam",
        "--cache",
        path_str(cache),
        "-o",
        path_str(out),
        "--raw",
        "--backend",
        backend,
    ];
    args.extend(extra);
    run_ok(&args);
}

#[test]
fn run_raw_gradcam_equals_the_formula_by_hand() {
    let dir = temp_dir();
    let cache = dir.path().join("c.safetensors");
    write_gradcam_cache(&cache, f32s);
    let out = dir.path().join("raw.npy");
    run_raw_gradcam(&cache, &out, "interp", &[]);
    let (shape, values) = read_npy(&out);
    assert_eq!(shape, [N, H, W]);
    assert_close(&values, &gradcam_by_hand(&activations(), &gradients()), 1e-6);
}

#[test]
fn run_post_processes_to_the_image_size_or_size() {
    let dir = temp_dir();
    let cache = dir.path().join("c.safetensors");
    write_gradcam_cache(&cache, f32s);
    let raw = gradcam_by_hand(&activations(), &gradients());
    // The interpreter post-processes on the host, the CPU JIT in its compiled function, each
    // worker writing its maps to the file (`run_scaled_each`); two batches put the second's
    // maps after the first's.
    let cases = [(None, [7, 11]), (Some("4,9"), [4, 9])];
    for ((size, expect), (backend, tolerance)) in cases
        .into_iter()
        .flat_map(|c| [(c, ("interp", 1e-6)), (c, ("cpu", 1e-5))])
    {
        let out = dir.path().join("out.npy");
        let mut args = vec![
            "run",
            "gradcam",
            "--cache",
            path_str(&cache),
            "-o",
            path_str(&out),
            "--backend",
            backend,
            "--batch",
            "2",
        ];
        if let Some(size) = size {
            args.extend(["--size", size]);
        }
        run_ok(&args);
        let (shape, values) = read_npy(&out);
        assert_eq!(shape, [N, expect[0], expect[1]]);
        for n in 0..N {
            let mut image = raw[n * H * W..(n + 1) * H * W].to_vec();
            minmax(&mut image);
            let mut expected = resize(&image, &[H, W], &expect);
            minmax(&mut expected);
            let got = &values[n * expect[0] * expect[1]..(n + 1) * expect[0] * expect[1]];
            assert_close(got, &expected, tolerance);
            let max = got.iter().copied().fold(0.0, f32::max);
            assert!((max - 1.0).abs() < 1e-5 && got.iter().all(|v| *v >= 0.0));
        }
    }
}

#[test]
fn heatmap_files_take_maps_in_any_order_and_check_the_count() {
    use camc_runtime::heatmap_file::HeatmapWriter;
    let dir = temp_dir();
    let path = dir.path().join("h.npy");
    let maps: Vec<Vec<f32>> = (0..4).map(|i| noise(10 + i, 6)).collect();
    let writer = HeatmapWriter::create(&path, &[4, 2, 3], &[]).expect("created");
    std::thread::scope(|scope| {
        for i in [3, 1, 0, 2] {
            let (writer, map) = (&writer, &maps[i]);
            scope.spawn(move || writer.write_at(i * 6, map).expect("written"));
        }
    });
    assert!(writer.write_at(19, &[0.0; 6]).is_err(), "past the declared shape");
    writer.finish().expect("every value written");
    let (shape, values) = read_npy(&path);
    assert_eq!(shape, [4, 2, 3]);
    assert_eq!(values, maps.concat());

    let mut short = HeatmapWriter::create(&path, &[4, 2, 3], &[]).expect("created");
    short.write(&maps[0]).expect("written");
    let err = short.finish().expect_err("18 values missing");
    assert!(err.to_string().contains("wrote 6 of 24"), "{err}");
    // The unfinished file never replaces the finished one, and leaves nothing behind.
    assert_eq!(read_npy(&path).1, maps.concat(), "the previous file is kept");
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1);
}

#[test]
fn f16_bf16_npy_and_shards_read_the_same_data() {
    let dir = temp_dir();
    let reference = dir.path().join("ref.npy");
    let f32_cache = dir.path().join("f32.safetensors");
    write_gradcam_cache(&f32_cache, f32s);
    run_raw_gradcam(&f32_cache, &reference, "interp", &[]);
    let (_, expected) = read_npy(&reference);

    // Half precision inputs: the same formula on the rounded values.
    for (name, to, round) in [
        (
            "f16",
            f16s as fn(&[usize], &[f32]) -> T,
            (|v: f32| half::f16::from_f32(v).to_f32()) as fn(f32) -> f32,
        ),
        ("bf16", bf16s, |v: f32| half::bf16::from_f32(v).to_f32()),
    ] {
        let cache = dir.path().join(format!("{name}.safetensors"));
        write_gradcam_cache(&cache, to);
        let out = dir.path().join(format!("{name}.npy"));
        for (backend, tolerance) in BACKENDS {
            run_raw_gradcam(&cache, &out, backend, &[]);
            let a: Vec<f32> = activations().into_iter().map(round).collect();
            let g: Vec<f32> = gradients().into_iter().map(round).collect();
            assert_close(&read_npy(&out).1, &gradcam_by_hand(&a, &g), tolerance.max(1e-6));
        }
    }

    // A directory of .npy files.
    let npy_dir = dir.path().join("npy");
    let shape = [N, K, H, W];
    write_npy_dir(
        &npy_dir,
        &[("A", &shape, &activations()), ("G", &shape, &gradients())],
    );
    let out = dir.path().join("npy.npy");
    for (backend, tolerance) in BACKENDS {
        run_raw_gradcam(&npy_dir, &out, backend, &[]);
        assert_close(&read_npy(&out).1, &expected, tolerance);
    }

    // Two shards (2 images + 1), streamed in batches of one.
    let per_image = K * H * W;
    let (a, g) = (activations(), gradients());
    for (i, range) in [(0, 0..2), (1, 2..3)] {
        let shape = [range.len(), K, H, W];
        let slice = |v: &[f32]| v[range.start * per_image..range.end * per_image].to_vec();
        write_safetensors(
            &dir.path().join(format!("shard-{i}.safetensors")),
            &[("A", f32s(&shape, &slice(&a))), ("G", f32s(&shape, &slice(&g)))],
            &[],
        );
    }
    let glob = dir.path().join("shard-*.safetensors");
    let out = dir.path().join("shards.safetensors");
    for (backend, tolerance) in BACKENDS {
        run_raw_gradcam(&glob, &out, backend, &["--batch", "1"]);
        let written = Cache::open(path_str(&out)).expect("camc reads its own output");
        let (shape, values) = written.shards[0].f32("heatmap").expect("heatmap tensor");
        assert_eq!(shape, [N, H, W]);
        assert_close(&values, &expected, tolerance);
    }
}

/// The interpreter (the reference: exact agreement) and the CPU JIT, which reads each image
/// from the cache file with positional reads (the backends tolerance, docs/run.md).
const BACKENDS: [(&str, f32); 2] = [("interp", 0.0), ("cpu", 1e-5)];

#[test]
fn a_cache_cut_short_while_a_cpu_backend_reads_it_is_an_error() {
    use camc_runtime::exec::{cpu::CpuExecutor, interp::InterpExecutor, Executor};
    use camc_runtime::run::Run;
    let gradcam = kernel(
        "cam c(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](G) * A))",
        camc_compiler::opt::Level::Exact,
    );
    for backend in ["cpu", "interp"] {
        let dir = temp_dir();
        let path = dir.path().join("c.safetensors");
        write_gradcam_cache(&path, f32s);
        let cache = Cache::open(path_str(&path)).expect("opens");
        let binding = Binding::new(&cache, &gradcam).expect("binds");
        // Another process truncates the file after camc opened it: the last image's gradients
        // are gone. Through the memory map this would be a SIGBUS; read, it is an error.
        let len = std::fs::metadata(&path).expect("exists").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(len - 8))
            .expect("truncated");
        let mut executor: Box<dyn Executor> = match backend {
            "cpu" => Box::new(CpuExecutor::new(&gradcam, binding.dims, Outputs::raw()).expect("compiles")),
            _ => {
                Box::new(InterpExecutor::new(&gradcam, binding.dims, Outputs::raw()).expect("valid outputs"))
            }
        };
        let job = Run {
            binding: &binding,
            batch: N,
            strict: false,
        };
        let err = job
            .execute(executor.as_mut(), &|_, _| Ok(()), |_| {})
            .expect_err("the last image cannot be read");
        // The message names the tensor, the file and what happened to it.
        let text = err.to_string();
        for part in ["reading `G` of image 2", "c.safetensors", "cut short"] {
            assert!(text.contains(part), "{backend}: `{part}` not in: {text}");
        }
    }
}

/// Opens `path` and binds Grad-CAM's inputs; the error text.
fn bind_error(path: &Path) -> String {
    let kernel = kernel(
        "cam c(A: [k,h,w], G: [k,h,w]) = sum[k](A * G)",
        camc_compiler::opt::Level::Exact,
    );
    match Cache::open(path_str(path)) {
        Err(e) => e.to_string(),
        Ok(cache) => match Binding::new(&cache, &kernel) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{} should be refused", path.display()),
        },
    }
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{message}` should mention `{part}`");
    }
}

#[test]
fn malformed_caches_are_errors_naming_file_and_tensor() {
    let dir = temp_dir();
    let good = dir.path().join("good.safetensors");
    write_gradcam_cache(&good, f32s);
    let bytes = std::fs::read(&good).expect("read");

    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).expect("write");
    assert_mentions(
        &bind_error(&truncated),
        &["truncated.safetensors", "truncated", "tensor `"],
    );

    let header_only = dir.path().join("short.safetensors");
    std::fs::write(&header_only, &bytes[..4]).expect("write");
    assert_mentions(&bind_error(&header_only), &["short.safetensors", "truncated"]);

    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x10\0\0\0\0\0\0\0not json at all!").expect("write");
    assert_mentions(&bind_error(&junk), &["junk.safetensors", "JSON"]);

    // A header that says A has 3 floats but gives it 8 bytes.
    let header = br#"{"A":{"dtype":"F32","shape":[1,1,1,3],"data_offsets":[0,8]}}"#;
    let mut lying = (header.len() as u64).to_le_bytes().to_vec();
    lying.extend_from_slice(header);
    lying.extend_from_slice(&[0; 8]);
    let liar = dir.path().join("liar.safetensors");
    std::fs::write(&liar, lying).expect("write");
    assert_mentions(
        &bind_error(&liar),
        &["liar.safetensors", "tensor `A`", "12 bytes", "8 bytes"],
    );

    let shape = [N, K, H, W];
    type Case<'a> = (&'a str, Vec<(&'a str, T)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "missing",
            vec![("A", f32s(&shape, &activations()))],
            vec!["tensor `G`", "missing", "[3, 4, 3, 5]"],
        ),
        (
            "int-a",
            vec![
                ("A", i64s(&shape, &vec![1; N * K * H * W])),
                ("G", f32s(&shape, &gradients())),
            ],
            vec!["tensor `A`", "i64"],
        ),
        (
            "shape",
            vec![
                ("A", f32s(&shape, &activations())),
                ("G", f32s(&[N, K, W, H], &gradients())),
            ],
            vec!["tensor `G`", "[3, 4, 5, 3]", "[3, 4, 3, 5]"],
        ),
        (
            "a-rank",
            vec![
                ("A", f32s(&[N, K * H * W], &activations())),
                ("G", f32s(&shape, &gradients())),
            ],
            vec!["tensor `A`", "[n,k,h,w]"],
        ),
    ];
    for (name, tensors, expected) in cases {
        let path = dir.path().join(format!("{name}.safetensors"));
        write_safetensors(&path, &tensors, &[]);
        let message = bind_error(&path);
        assert_mentions(&message, &[&format!("{name}.safetensors")]);
        assert_mentions(&message, &expected);
    }

    // Shards that disagree on sizes.
    write_safetensors(
        &dir.path().join("s-0.safetensors"),
        &[
            ("A", f32s(&shape, &activations())),
            ("G", f32s(&shape, &gradients())),
        ],
        &[],
    );
    let other = [1, K, H + 1, W];
    let len = K * (H + 1) * W;
    write_safetensors(
        &dir.path().join("s-1.safetensors"),
        &[
            ("A", f32s(&other, &vec![0.0; len])),
            ("G", f32s(&other, &vec![0.0; len])),
        ],
        &[],
    );
    assert_mentions(
        &bind_error(&dir.path().join("s-*.safetensors")),
        &["s-1.safetensors", "tensor `A`", "first shard"],
    );

    // A truncated .npy in a directory.
    let npy_dir = dir.path().join("npy");
    write_npy_dir(
        &npy_dir,
        &[("A", &shape, &activations()), ("G", &shape, &gradients())],
    );
    let g = npy_dir.join("G.npy");
    let g_bytes = std::fs::read(&g).expect("read");
    std::fs::write(&g, &g_bytes[..g_bytes.len() - 4]).expect("write");
    assert_mentions(&bind_error(&npy_dir), &["npy", "tensor `G`", "truncated"]);
}

#[test]
fn run_reports_errors_with_exit_codes() {
    let dir = temp_dir();
    let cache = dir.path().join("c.safetensors");
    write_gradcam_cache(&cache, f32s);
    let out = dir.path().join("o.npy");
    let c = path_str(&cache);
    let o = path_str(&out);
    let code = |args: &[&str]| camc(args).status.code();
    assert_eq!(
        code(&["run", "gradcam", "--cache", c, "-o", "x.png"]),
        Some(1),
        "bad output extension"
    );
    assert_eq!(
        code(&["run", "nosuch", "--cache", c, "-o", o]),
        Some(1),
        "unknown method"
    );
    assert_eq!(
        code(&["run", "gradcam", "--cache", "/nonexistent.safetensors", "-o", o]),
        Some(1)
    );
    assert_eq!(
        code(&["run", "gradcam", "--cache", c, "-o", o, "--batch", "0"]),
        Some(2),
        "usage"
    );
    assert_eq!(
        code(&["run", "gradcam", "--cache", c, "-o", o, "--size", "0,3"]),
        Some(2),
        "usage"
    );
    assert_eq!(
        code(&["run", "gradcam", "--cache", c, "-o", o, "--set", "nope=1"]),
        Some(1),
        "unknown knob"
    );
    assert_eq!(
        code(&[
            "run",
            "gradcampp",
            "--cache",
            c,
            "-o",
            o,
            "--set",
            "eps=1e-5",
            "--backend",
            "interp"
        ]),
        Some(0)
    );
}

/// Pearson correlation of two maps, by hand.
fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64 - ma, y as f64 - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

#[test]
fn eval_robust_with_stdlib_skips_methods_the_perturbed_cache_cannot_run() {
    let dir = temp_dir();
    let (clean, perturbed) = (
        dir.path().join("clean.safetensors"),
        dir.path().join("noisy.safetensors"),
    );
    let shape = [N, K, H, W];
    let weights = noise(3, N * K);
    write_safetensors(
        &clean,
        &[
            ("A", f32s(&shape, &activations())),
            ("G", f32s(&shape, &gradients())),
            ("W", f32s(&[N, K], &weights)),
        ],
        &[("image_size", "7,11")],
    );
    // The same images with noisier gradients, and without the classifier weights fc_cam needs.
    let noisy: Vec<f32> = gradients()
        .iter()
        .zip(noise(4, N * K * H * W))
        .map(|(g, e)| g + 0.5 * e)
        .collect();
    write_safetensors(
        &perturbed,
        &[("A", f32s(&shape, &activations())), ("G", f32s(&shape, &noisy))],
        &[("image_size", "7,11")],
    );
    let json = dir.path().join("rows.json");
    let out = run_ok(&[
        "eval",
        "--stdlib",
        "--cache",
        path_str(&clean),
        "--perturbed",
        path_str(&perturbed),
        "--metric",
        "robust",
        "--json",
        path_str(&json),
    ]);
    assert_mentions(&stderr(&out), &["skipping fc_cam", "noisy.safetensors", "`W`"]);
    let rows: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    let rows = rows.as_array().expect("a list of rows");
    let robust_of = |program: &str| {
        rows.iter()
            .find(|r| r["program"] == program && r["metric"] == "robust")
            .map(|r| r["value"].as_f64().expect("a number"))
    };
    assert_eq!(
        robust_of("fc_cam"),
        None,
        "fc_cam cannot run on the perturbed cache"
    );
    // Against the maps of `camc run` on both caches and Pearson's formula by hand.
    let maps = |cache: &Path| {
        let npy = dir.path().join("maps.npy");
        run_ok(&["run", "gradcam", "--cache", path_str(cache), "-o", path_str(&npy)]);
        read_npy(&npy).1
    };
    let (a, b) = (maps(&clean), maps(&perturbed));
    let expected = a
        .chunks(7 * 11)
        .zip(b.chunks(7 * 11))
        .map(|(x, y)| pearson(x, y))
        .sum::<f64>()
        / N as f64;
    let got = robust_of("gradcam").expect("gradcam evaluated");
    assert!(expected < 0.999, "the perturbation changes the maps ({expected})");
    assert!((got - expected).abs() < 1e-5, "robust {got}, by hand {expected}");
}

#[test]
fn nonfinite_results_warn_or_fail_with_strict() {
    let dir = temp_dir();
    let cache = dir.path().join("nan.safetensors");
    let mut g = gradients();
    g[0] = f32::NAN; // image 0, channel 0: its weight is NaN, so image 0's map is NaN.
    let shape = [N, K, H, W];
    write_safetensors(
        &cache,
        &[("A", f32s(&shape, &activations())), ("G", f32s(&shape, &g))],
        &[],
    );
    let out = dir.path().join("o.npy");
    let args = [
        "run",
        "gradcam",
        "--cache",
        path_str(&cache),
        "-o",
        path_str(&out),
        "--backend",
        "interp",
    ];
    let warned = run_ok(&args);
    assert_mentions(&stderr(&warned), &["warning", "image 0", "`G` has 1 NaN"]);
    let (_, values) = read_npy(&out);
    assert!(values.iter().all(|v| v.is_finite()));
    let kept = std::fs::read(&out).expect("output");
    let strict = camc(&[&args[..], &["--strict"]].concat());
    assert_eq!(strict.status.code(), Some(1));
    assert_mentions(&stderr(&strict), &["image 0", "non-finite", "`G`"]);
    // The failed run writes nothing: the previous output stays as it was.
    assert_eq!(
        std::fs::read(&out).expect("output"),
        kept,
        "a failed run changes no output"
    );
    let fresh = dir.path().join("fresh.npy");
    let strict = camc(&[&args[..5], &[path_str(&fresh)], &args[6..], &["--strict"]].concat());
    assert_eq!(strict.status.code(), Some(1));
    assert!(!fresh.exists(), "a failed run leaves no output");
}

#[test]
fn errors_about_the_program_point_at_its_source() {
    let dir = temp_dir();
    let cache = dir.path().join("c.safetensors");
    write_safetensors(&cache, &[("A", f32s(&[N, K, H, W], &activations()))], &[]);
    let program = dir.path().join("p.cam");
    std::fs::write(
        &program,
        "# two parameters; the cache has no S\ncam p(A: [k,h,w], S: [k]) = relu(sum[k](S * A))\n",
    )
    .expect("written");
    let out = dir.path().join("o.npy");
    let run = |extra: &[&str]| {
        let args = [
            "run",
            path_str(&program),
            "--cache",
            path_str(&cache),
            "-o",
            path_str(&out),
        ];
        camc(&[&args[..], extra].concat())
    };
    let missing = run(&[]);
    assert_eq!(missing.status.code(), Some(1));
    // The binding error is shown at the parameter's declaration, line 2 of the file.
    assert_mentions(
        &stderr(&missing),
        &[
            "tensor `S`",
            "missing",
            "p.cam:2:",
            "S: [k]",
            "the parameter bound to this tensor",
        ],
    );
    // A result that is not finite, under --strict, is shown at the program's result.
    std::fs::write(&program, "cam p(A: [k,h,w]) = sum[k](A) / 0\n").expect("written");
    let strict = run(&["--strict", "--backend", "interp"]);
    assert_eq!(strict.status.code(), Some(1));
    assert_mentions(
        &stderr(&strict),
        &["non-finite", "p.cam:1:", "sum[k](A) / 0", "this result"],
    );
}

mod hostile {
    use super::*;
    use camc_runtime::exec::{interp::InterpExecutor, Executor};
    use camc_runtime::run::Run;
    use proptest::prelude::*;

    /// Opens, binds and runs a cache's bytes; any outcome but a panic is fine.
    fn try_everything(bytes: &[u8]) {
        let dir = temp_dir();
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, bytes).expect("write");
        let kernel = kernel(
            "cam c(A: [k,h,w], G: [k,h,w]) = sum[k](A * G)",
            camc_compiler::opt::Level::Exact,
        );
        let Ok(cache) = Cache::open(path_str(&path)) else {
            return;
        };
        let _ = cache.image_size();
        let Ok(binding) = Binding::new(&cache, &kernel) else {
            return;
        };
        let Ok(mut executor) = InterpExecutor::new(&kernel, binding.dims, Outputs::processed(vec![4, 4]))
        else {
            return;
        };
        let run = Run {
            binding: &binding,
            batch: 2,
            strict: false,
        };
        let _ = run.execute(&mut executor as &mut dyn Executor, &|_, _| Ok(()), |_| {});
    }

    fn good_bytes() -> Vec<u8> {
        let dir = temp_dir();
        let path = dir.path().join("g.safetensors");
        let shape = [2, 2, 2, 3];
        write_safetensors(
            &path,
            &[
                ("A", f32s(&shape, &noise(3, 24))),
                ("G", f16s(&shape, &noise(4, 24))),
            ],
            &[("image_size", "5,5")],
        );
        std::fs::read(path).expect("read")
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn mutated_caches_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
            let mut bytes = good_bytes();
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            try_everything(&bytes);
            let keep = cut.index(bytes.len());
            try_everything(&bytes[..keep]);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            try_everything(&bytes);
        }
    }
}

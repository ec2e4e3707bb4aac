//! camc used as a hostile user would: outputs that are inputs, runs killed or failing half-way,
//! two runs on one output, checkpoints of another search, metadata that does not fit, special
//! files where files are expected. Each test names the failure it guards against.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::caches::*;
use support::cli::{camc, stderr};

const N: usize = 3;
const K: usize = 4;
const H: usize = 5;
const W: usize = 6;

/// Exit status 1 (a diagnosed error, never a panic's 101 or a signal) with every part in stderr.
fn assert_error(o: &Output, parts: &[&str]) {
    let text = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, stderr:\n{text}");
    assert!(!text.contains("panicked"), "a panic:\n{text}");
    for part in parts {
        assert!(text.contains(part), "`{part}` not in:\n{text}");
    }
}

fn assert_ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "stderr:\n{}", stderr(o));
}

/// A Grad-CAM-able cache of `n` images with `image_size` 10,12 and boxes.
fn write_cache(path: &Path, n: usize, metadata: &[(&str, &str)]) {
    let shape = [n, K, H, W];
    let len = n * K * H * W;
    let boxes: Vec<f32> = (0..n).flat_map(|_| [1.0, 1.0, 6.0, 5.0]).collect();
    write_safetensors(
        path,
        &[
            (
                "A",
                f32s(&shape, &noise(1, len).iter().map(|v| v.abs()).collect::<Vec<_>>()),
            ),
            ("G", f32s(&shape, &noise(2, len))),
            ("boxes", f32s(&[n, 4], &boxes)),
        ],
        metadata,
    );
}

fn cache_in(dir: &Path) -> PathBuf {
    let cache = dir.join("c.safetensors");
    write_cache(&cache, N, &[("image_size", "10,12")]);
    cache
}

// 1. Never destroy an input.

#[test]
fn an_output_that_is_an_input_is_refused_and_the_input_kept() {
    let dir = temp_dir();
    let cache = cache_in(dir.path());
    let before = std::fs::read(&cache).expect("cache");
    let c = path_str(&cache);
    let kept = |what: &str| assert_eq!(std::fs::read(&cache).expect("cache"), before, "{what}");

    let o = camc(&["run", "gradcam", "--cache", c, "-o", c]);
    assert_error(&o, &["c.safetensors", "input"]);
    kept("run -o CACHE");

    let link = dir.path().join("link.safetensors");
    std::os::unix::fs::symlink(&cache, &link).expect("symlink");
    let o = camc(&["run", "gradcam", "--cache", c, "-o", path_str(&link)]);
    assert_error(&o, &["input"]);
    kept("run -o LINK-TO-CACHE");

    let hard = dir.path().join("hard.safetensors");
    std::fs::hard_link(&cache, &hard).expect("hard link");
    let o = camc(&["run", "gradcam", "--cache", c, "-o", path_str(&hard)]);
    assert_error(&o, &["input"]);
    kept("run -o HARD-LINK-TO-CACHE");

    let o = camc(&["eval", "gradcam", "--cache", c, "--metric", "energy", "--json", c]);
    assert_error(&o, &["input"]);
    kept("eval --json CACHE");

    // A directory of .npy files: an output inside it, or a --png folder that is it.
    let npy = dir.path().join("npy");
    let values = noise(3, N * K * H * W);
    write_npy_dir(
        &npy,
        &[("A", &[N, K, H, W], &values), ("G", &[N, K, H, W], &values)],
    );
    let a = npy.join("A.npy");
    let a_before = std::fs::read(&a).expect("A.npy");
    let o = camc(&[
        "run",
        "gradcam",
        "--cache",
        path_str(&npy),
        "-o",
        path_str(&a),
        "--raw",
    ]);
    assert_error(&o, &["input"]);
    assert_eq!(std::fs::read(&a).expect("A.npy"), a_before, "run -o NPYDIR/A.npy");
    let out = dir.path().join("out.npy");
    let o = camc(&[
        "run",
        "gradcam",
        "--cache",
        c,
        "-o",
        path_str(&out),
        "--png",
        path_str(dir.path()),
    ]);
    assert_error(&o, &["input"]);
    kept("run --png DIR-HOLDING-CACHE");
    assert!(!out.exists(), "nothing written when the command is refused");

    // The program file is an input too.
    let program = dir.path().join("p.cam");
    std::fs::write(&program, "cam p(A: [k,h,w]) = sum[k](A)\n").expect("program");
    let o = camc(&[
        "emit",
        path_str(&program),
        "--target",
        "ir",
        "-o",
        path_str(&program),
    ]);
    assert_error(&o, &["input"]);
    assert!(std::fs::read_to_string(&program)
        .expect("program")
        .starts_with("cam p"));
}

// 2. Outputs appear whole or not at all.

#[test]
fn a_failed_run_keeps_the_previous_output() {
    let dir = temp_dir();
    let cache = cache_in(dir.path());
    let out = dir.path().join("out.npy");
    let (c, o) = (path_str(&cache), path_str(&out));
    assert_ok(&camc(&["run", "gradcam", "--cache", c, "-o", o]));
    let good = std::fs::read(&out).expect("output");
    // log of a negative value: non-finite, an error under --strict.
    let program = dir.path().join("bad.cam");
    std::fs::write(&program, "cam bad(A: [k,h,w]) = log(sum[k](A) - 1000.0)\n").expect("program");
    let failed = camc(&["run", path_str(&program), "--cache", c, "-o", o, "--strict"]);
    assert_error(&failed, &["non-finite"]);
    assert_eq!(std::fs::read(&out).expect("output kept"), good);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// A cache big enough that `run` takes a while on one thread: 4 000 images of 64×7×7.
fn big_cache(dir: &Path) -> PathBuf {
    let cache = dir.join("big.safetensors");
    let (n, k) = (4000, 64);
    let shape = [n, k, 7, 7];
    let a = noise(5, n * k * 49);
    write_safetensors(
        &cache,
        &[("A", f32s(&shape, &a)), ("G", f32s(&shape, &a))],
        &[("image_size", "224,224")],
    );
    cache
}

#[test]
fn a_killed_run_leaves_no_partial_output() {
    let dir = temp_dir();
    let cache = big_cache(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("dir");
    let out = out_dir.join("maps.npy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_camc"))
        .args([
            "run",
            "gradcampp",
            "--cache",
            path_str(&cache),
            "-o",
            path_str(&out),
        ])
        .args(["--backend", "interp", "--batch", "8"])
        .env("RAYON_NUM_THREADS", "1")
        .stderr(Stdio::null())
        .spawn()
        .expect("camc starts");
    // Killed as soon as it has begun writing (a file, temporary or not, is in the folder).
    let start = Instant::now();
    while std::fs::read_dir(&out_dir).expect("dir").next().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "camc wrote nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    if status.success() {
        return; // It finished first: nothing to check on this machine.
    }
    assert!(!out.exists(), "a killed run left {} behind", out.display());
}

#[test]
fn an_interrupted_run_leaves_nothing_behind() {
    let dir = temp_dir();
    let cache = big_cache(dir.path());
    for signal in ["-INT", "-TERM"] {
        let out_dir = dir.path().join(format!("out{signal}"));
        std::fs::create_dir(&out_dir).expect("dir");
        let out = out_dir.join("maps.npy");
        let mut child = Command::new(env!("CARGO_BIN_EXE_camc"))
            .args([
                "run",
                "gradcampp",
                "--cache",
                path_str(&cache),
                "-o",
                path_str(&out),
            ])
            .args([
                "--backend",
                "interp",
                "--batch",
                "8",
                "--png",
                path_str(&out_dir.join("png")),
            ])
            .env("RAYON_NUM_THREADS", "1")
            .stderr(Stdio::null())
            .spawn()
            .expect("camc starts");
        let start = Instant::now();
        while std::fs::read_dir(&out_dir).expect("dir").count() < 2 {
            assert!(start.elapsed() < Duration::from_secs(60), "camc wrote nothing");
            std::thread::sleep(Duration::from_millis(5));
        }
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let status = child.wait().expect("wait");
        if status.success() {
            continue; // It finished first.
        }
        assert_eq!(status.code(), Some(130), "{signal}");
        let left: Vec<_> = std::fs::read_dir(&out_dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{signal} left {left:?}");
    }
}

#[test]
fn two_runs_on_one_output_leave_one_whole_result() {
    let dir = temp_dir();
    let cache = big_cache(dir.path());
    let out = dir.path().join("maps.npy");
    let spawn = |method: &str| {
        Command::new(env!("CARGO_BIN_EXE_camc"))
            .args(["run", method, "--cache", path_str(&cache), "-o", path_str(&out)])
            .args(["--size", "14,14", "--batch", "64"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("camc starts")
    };
    let (first, second) = (spawn("gradcam"), spawn("gradcampp"));
    assert_ok(&first.wait_with_output().expect("first"));
    assert_ok(&second.wait_with_output().expect("second"));
    let (_, both) = read_npy(&out);
    let alone = |method: &str| {
        let path = dir.path().join(format!("{method}.npy"));
        assert_ok(&camc(&[
            "run",
            method,
            "--cache",
            path_str(&cache),
            "-o",
            path_str(&path),
            "--size",
            "14,14",
        ]));
        read_npy(&path).1
    };
    assert!(
        both == alone("gradcam") || both == alone("gradcampp"),
        "the output mixes the maps of two methods"
    );
}

// 3. A checkpoint is only resumed by the search that wrote it.

fn search_args<'a>(cache: &'a str, out: &'a str, metric: &'a str) -> Vec<&'a str> {
    vec![
        "search",
        "--cache",
        cache,
        "--out",
        out,
        "--metric",
        metric,
        "--budget",
        "12",
        "--backend",
        "interp",
    ]
}

#[test]
fn resume_refuses_the_checkpoint_of_another_search() {
    let dir = temp_dir();
    let cache = cache_in(dir.path());
    let out = dir.path().join("search");
    let (c, o) = (path_str(&cache), path_str(&out));
    assert_ok(&camc(&search_args(c, o, "energy")));
    let checkpoint = std::fs::read(out.join("checkpoint.jsonl")).expect("checkpoint");
    let with = |extra: &[&str]| {
        let mut args = search_args(c, o, "energy");
        args.extend(extra);
        args.push("--resume");
        camc(&args)
    };
    let mut other = search_args(c, o, "pointing");
    other.push("--resume");
    assert_error(&camc(&other), &["checkpoint", "metric"]);
    assert_error(&with(&["--seed", "3"]), &["checkpoint", "seed"]);
    assert_error(&with(&["--holdout", "0.5"]), &["checkpoint", "holdout"]);
    let copy = dir.path().join("copy.safetensors");
    write_cache(&copy, N + 1, &[("image_size", "10,12")]);
    let mut moved = search_args(path_str(&copy), o, "energy");
    moved.push("--resume");
    assert_error(&camc(&moved), &["checkpoint", "cache"]);
    assert_eq!(
        std::fs::read(out.join("checkpoint.jsonl")).expect("kept"),
        checkpoint
    );
    // The same search resumes every result.
    let resumed = with(&[]);
    assert_ok(&resumed);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report"))
            .expect("json");
    assert_eq!(report["outcome"]["resumed"], 12);
}

#[test]
fn a_new_search_over_a_checkpoint_needs_force_which_clears_old_ranks() {
    let dir = temp_dir();
    let cache = cache_in(dir.path());
    let out = dir.path().join("search");
    let (c, o) = (path_str(&cache), path_str(&out));
    assert_ok(&camc(&search_args(c, o, "energy")));
    let checkpoint = std::fs::read(out.join("checkpoint.jsonl")).expect("checkpoint");
    assert!(out.join("rank-05.cam").exists());
    assert_error(&camc(&search_args(c, o, "pointing")), &["checkpoint", "--force"]);
    assert_eq!(
        std::fs::read(out.join("checkpoint.jsonl")).expect("kept"),
        checkpoint
    );
    let mut forced = search_args(c, o, "pointing");
    forced.extend(["--force", "--keep", "2"]);
    assert_ok(&camc(&forced));
    assert!(out.join("rank-02.cam").exists());
    assert!(
        !out.join("rank-03.cam").exists(),
        "a stale rank file of the old search"
    );
    let first = std::fs::read_to_string(out.join("checkpoint.jsonl")).expect("checkpoint");
    assert!(
        first.lines().next().is_some_and(|l| l.contains("pointing")),
        "{first}"
    );
}

// 4. Metadata and sizes that do not fit are errors, not panics or aborts.

#[test]
fn image_size_that_does_not_fit_the_map_is_an_error() {
    let dir = temp_dir();
    for (i, size) in ["64", "64,64,64"].iter().enumerate() {
        let cache = dir.path().join(format!("c{i}.safetensors"));
        write_cache(&cache, N, &[("image_size", size)]);
        let c = path_str(&cache);
        let o = camc(&["eval", "gradcam", "--cache", c, "--metric", "energy"]);
        assert_error(&o, &["image_size", "c", size]);
        let o = camc(&["eval", "--stdlib", "--cache", c, "--metric", "loc"]);
        assert_error(&o, &["image_size"]);
        let out = dir.path().join("s");
        let o = camc(&search_args(c, path_str(&out), "energy"));
        assert_error(&o, &["image_size"]);
        let out = dir.path().join("o.npy");
        let o = camc(&["run", "gradcam", "--cache", c, "-o", path_str(&out)]);
        assert_error(&o, &["image_size"]);
    }
}

#[test]
fn metrics_of_a_3d_cache_are_a_usage_error() {
    let dir = temp_dir();
    let cache = dir.path().join("3d.safetensors");
    let shape = [2, 3, 2, 4, 4];
    let a = noise(4, 2 * 3 * 2 * 16);
    write_safetensors(
        &cache,
        &[
            ("A", f32s(&shape, &a)),
            ("G", f32s(&shape, &a)),
            ("boxes", f32s(&[2, 4], &[1.0, 1.0, 4.0, 4.0, 0.0, 0.0, 2.0, 2.0])),
        ],
        &[("image_size", "4,8,8")],
    );
    let program = dir.path().join("p.cam");
    std::fs::write(&program, "cam p(A: [k,d,h,w]) = sum[k](A)\n").expect("program");
    let o = camc(&[
        "eval",
        path_str(&program),
        "--cache",
        path_str(&cache),
        "--metric",
        "energy",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("3-D"), "{}", stderr(&o));
}

/// `ad`, `ic`, `ag` re-run the model (camc.torch.evaluate); from a cache they are a usage error
/// that points to the feature-level `*_feat` metric and to the Python API.
#[test]
fn image_level_metrics_of_a_cache_are_a_usage_error_naming_the_feature_level_ones() {
    let cache = "examples/data/demo16.safetensors";
    let dir = temp_dir();
    let out = dir.path().join("search");
    for (args, name) in [
        (
            vec!["eval", "gradcam", "--cache", cache, "--metric", "loc,ad"],
            "ad",
        ),
        (vec!["eval", "gradcam", "--cache", cache, "--metric", "ic"], "ic"),
        (
            vec![
                "search",
                "--cache",
                cache,
                "--metric",
                "ag",
                "--budget",
                "5",
                "--out",
                path_str(&out),
            ],
            "ag",
        ),
    ] {
        let o = camc(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let text = stderr(&o);
        assert!(text.contains(&format!("`{name}_feat`")), "{text}");
        assert!(text.contains("camc.torch.evaluate"), "{text}");
    }
    assert!(!out.exists(), "the search wrote {}", out.display());
}

#[test]
fn empty_axes_and_huge_maps_are_errors() {
    let dir = temp_dir();
    let cache = dir.path().join("empty.safetensors");
    let shape = [2, 3, 0, 4];
    write_safetensors(
        &cache,
        &[("A", f32s(&shape, &[])), ("G", f32s(&shape, &[]))],
        &[("image_size", "8,8")],
    );
    let out = dir.path().join("s");
    let o = camc(&search_args(path_str(&cache), path_str(&out), "energy"));
    assert_error(&o, &["empty.safetensors"]);

    let normal = cache_in(dir.path());
    let out = dir.path().join("o.npy");
    let o = camc(&[
        "run",
        "gradcam",
        "--cache",
        path_str(&normal),
        "-o",
        path_str(&out),
        "--size",
        "65536,65536",
        "--backend",
        "interp",
    ]);
    assert_error(&o, &["65536"]);
    let huge = dir.path().join("huge.safetensors");
    write_cache(&huge, N, &[("image_size", "65536,65536")]);
    let o = camc(&[
        "eval",
        "gradcam",
        "--cache",
        path_str(&huge),
        "--metric",
        "energy",
    ]);
    assert_error(&o, &["65536"]);
}

#[test]
fn an_npy_header_with_an_absurd_shape_is_an_error() {
    // Found by tests/cache_fuzz.rs: the shape's products overflowed inside the .npy reader.
    let dir = temp_dir();
    let npy = npy_cache(dir.path());
    let a = npy.join("A.npy");
    let bytes = std::fs::read(&a).expect("A.npy");
    let text = String::from_utf8_lossy(&bytes[..128]).into_owned();
    let out = dir.path().join("o.npy");
    // A zero-sized axis does not make the others fit (the reader multiplies every prefix).
    for shape in ["(18446744073709551615, ", "(0, 18446744073709551615, "] {
        let header = text.replacen(&format!("({N}, "), shape, 1);
        assert_ne!(header, text);
        let mut mutated = header.into_bytes();
        mutated.extend_from_slice(&bytes[128..]);
        std::fs::write(&a, mutated).expect("write");
        let o = camc(&["run", "gradcam", "--cache", path_str(&npy), "-o", path_str(&out)]);
        assert_error(&o, &["A.npy", "too large"]);
    }
}

/// A `.npy` directory cache `DIR/npy` with Grad-CAM's inputs.
fn npy_cache(dir: &Path) -> PathBuf {
    let npy = dir.join("npy");
    let values = noise(3, N * K * H * W);
    write_npy_dir(
        &npy,
        &[("A", &[N, K, H, W], &values), ("G", &[N, K, H, W], &values)],
    );
    npy
}

// 5. Special files and wrong arguments end quickly with an error.

/// Runs camc and fails the test if it takes longer than `limit` (a hang).
fn camc_within(args: &[&str], limit: Duration) -> Output {
    support::cli::camc_within(args, limit)
        .unwrap_or_else(|| panic!("camc {args:?} still running after {limit:?}"))
}

#[test]
fn special_files_are_not_read_as_inputs() {
    let dir = temp_dir();
    let npy = npy_cache(dir.path());
    let fifo = npy.join("meta.json");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let out = dir.path().join("o.npy");
    let o = camc_within(
        &["run", "gradcam", "--cache", path_str(&npy), "-o", path_str(&out)],
        Duration::from_secs(20),
    );
    assert_error(&o, &["meta.json", "regular file"]);

    let o = camc_within(&["check", "/dev/zero"], Duration::from_secs(20));
    assert_error(&o, &["/dev/zero"]);
    let big = dir.path().join("big.cam");
    std::fs::write(&big, vec![b' '; 20 << 20]).expect("big file");
    let o = camc_within(&["check", path_str(&big)], Duration::from_secs(20));
    assert_error(&o, &["big.cam", "MiB"]);
}

#[test]
fn an_unquoted_glob_of_shards_is_not_read_as_programs() {
    let dir = temp_dir();
    let first = dir.path().join("shard-0.safetensors");
    let second = dir.path().join("shard-1.safetensors");
    write_cache(&first, N, &[("image_size", "10,12")]);
    write_cache(&second, N, &[("image_size", "10,12")]);
    // What `--cache shards/*.safetensors` becomes when the shell expands it.
    let o = camc_within(
        &[
            "eval",
            "gradcam",
            "--cache",
            path_str(&first),
            path_str(&second),
            "--metric",
            "energy",
        ],
        Duration::from_secs(20),
    );
    assert_error(&o, &["shard-1.safetensors", "quote"]);
}

// 6. eval refuses tensors it cannot read, instead of scoring plausible wrong numbers.

/// A cache with a linear head (3 classes) and targets, plus `extra` tensors replacing any of
/// the same name.
fn head_cache(path: &Path, replace: Vec<(&str, T)>) {
    let shape = [N, K, H, W];
    let len = N * K * H * W;
    let a: Vec<f32> = noise(1, len).iter().map(|v| v.abs()).collect();
    let mut tensors = vec![
        ("A", f32s(&shape, &a)),
        ("G", f32s(&shape, &noise(2, len))),
        ("head.weight", f32s(&[3, K], &noise(3, 3 * K))),
        ("head.bias", f32s(&[3], &[0.1, 0.0, -0.1])),
        ("target", i64s(&[N], &[0, 2, 1])),
        ("boxes", f32s(&[N, 4], &[1.0, 1.0, 6.0, 5.0].repeat(N))),
    ];
    for (name, tensor) in replace {
        tensors.retain(|(n, _)| *n != name);
        tensors.push((name, tensor));
    }
    write_safetensors(path, &tensors, &[("image_size", "10,12")]);
}

#[test]
fn eval_refuses_tensors_that_do_not_fit_a() {
    let dir = temp_dir();
    let good = dir.path().join("good.safetensors");
    head_cache(&good, vec![]);
    let eval = |cache: &Path, metric: &str| {
        camc(&["eval", "gradcam", "--cache", path_str(cache), "--metric", metric])
    };
    assert_ok(&eval(&good, "ad_feat,loc"));
    // (cache name, tensors replaced, metric, what the message names)
    type Case<'a> = (&'a str, Vec<(&'a str, T)>, &'a str, [&'a str; 2]);
    let cases: Vec<Case> = vec![
        (
            "target-2",
            vec![("target", i64s(&[N, 2], &[0; N * 2]))],
            "ad_feat",
            ["target", "[3]"],
        ),
        (
            "target-short",
            vec![("target", i64s(&[N - 1], &[0; N - 1]))],
            "ad_feat",
            ["target", "[3]"],
        ),
        (
            "target-class",
            vec![("target", i64s(&[N], &[0, 7, 1]))],
            "ad_feat",
            ["target", "0..3"],
        ),
        (
            "transposed",
            vec![("head.weight", f32s(&[K, 3], &noise(3, 3 * K)))],
            "ad_feat",
            ["head.weight", "transpose"],
        ),
        (
            "bias",
            vec![("head.bias", f32s(&[4], &[0.0; 4]))],
            "ad_feat",
            ["head.weight", "head.bias"],
        ),
        (
            "boxes-short",
            vec![("boxes", f32s(&[N - 1, 4], &[1.0; (N - 1) * 4]))],
            "loc",
            ["boxes", "[3,4]"],
        ),
        (
            "image-f32",
            vec![("image", f32s(&[N, 3, 10, 12], &[0.5; N * 360]))],
            "loc",
            ["image", "uint8"],
        ),
    ];
    for (name, replace, metric, parts) in cases {
        let cache = dir.path().join(format!("{name}.safetensors"));
        head_cache(&cache, replace);
        let o = eval(&cache, metric);
        assert_error(&o, &[&format!("{name}.safetensors"), parts[0], parts[1]]);
    }
}

#[test]
fn eval_warns_about_non_finite_maps_like_run() {
    let dir = temp_dir();
    let cache = cache_in(dir.path());
    let program = dir.path().join("bad.cam");
    std::fs::write(&program, "cam bad(A: [k,h,w]) = log(sum[k](A) - 1000.0)\n").expect("program");
    let o = camc(&[
        "eval",
        path_str(&program),
        "--cache",
        path_str(&cache),
        "--metric",
        "energy",
    ]);
    assert_ok(&o);
    assert!(stderr(&o).contains("non-finite value(s)"), "{}", stderr(&o));
}

#[test]
fn meta_json_that_cannot_be_read_is_an_error() {
    let dir = temp_dir();
    let values = noise(3, N * K * H * W);
    for (name, make) in [
        (
            "latin1",
            Box::new(|p: &Path| std::fs::write(p, b"{\"image_size\": \"\xe9\"}").expect("write"))
                as Box<dyn Fn(&Path)>,
        ),
        (
            "folder",
            Box::new(|p: &Path| std::fs::create_dir(p).expect("dir")),
        ),
    ] {
        let npy = dir.path().join(name);
        write_npy_dir(
            &npy,
            &[("A", &[N, K, H, W], &values), ("G", &[N, K, H, W], &values)],
        );
        make(&npy.join("meta.json"));
        let out = dir.path().join("o.npy");
        let o = camc(&["run", "gradcam", "--cache", path_str(&npy), "-o", path_str(&out)]);
        assert_error(&o, &["meta.json"]);
    }
}

#[test]
fn eval_reading_a_cache_cut_short_during_the_run_is_an_error_not_a_fault() {
    use camc_analysis::evaluate::{Evaluation, MetricData};
    use camc_analysis::metrics::metrics_by_names;
    use camc_runtime::cache::{Binding, Cache};
    use camc_runtime::exec::{interp::InterpExecutor, Executor};
    let dir = temp_dir();
    let cache_path = dir.path().join("c.safetensors");
    // safetensors stores f32 tensors before f16 ones, so `A` (f16) ends the file.
    let shape = [N, K, H, W];
    let len = N * K * H * W;
    write_safetensors(
        &cache_path,
        &[
            (
                "A",
                f16s(&shape, &noise(1, len).iter().map(|v| v.abs()).collect::<Vec<_>>()),
            ),
            ("G", f32s(&shape, &noise(2, len))),
            ("head.weight", f32s(&[3, K], &noise(3, 3 * K))),
            ("head.bias", f32s(&[3], &[0.1, 0.0, -0.1])),
            ("target", i64s(&[N], &[0, 2, 1])),
        ],
        &[("image_size", "10,12")],
    );
    let kernel = support::kernel(
        "cam only_g(G: [k,h,w]) = relu(sum[k](G))",
        camc_compiler::opt::Level::Exact,
    );
    let cache = Cache::open(path_str(&cache_path)).expect("opens");
    let binding = Binding::new(&cache, &kernel).expect("binds");
    let data = MetricData::load(
        &cache,
        &metrics_by_names("ad_feat").expect("ad_feat"),
        vec![10, 12],
        false,
    )
    .expect("loads");
    // Another process cuts the file: the last image's activations are gone.
    let bytes = std::fs::metadata(&cache_path).expect("exists").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cache_path)
        .and_then(|f| f.set_len(bytes - 16))
        .expect("cut");
    let evaluation = Evaluation {
        kernel: &kernel,
        binding: &binding,
        cache: &cache,
        data: &data,
        batch: N,
        perturbed: None,
    };
    let mut groups = vec![metrics_by_names("ad_feat").expect("ad_feat")];
    let mut executor: Box<dyn Executor> =
        Box::new(InterpExecutor::new(&kernel, binding.dims, evaluation.outputs(&groups)).expect("executor"));
    let error = evaluation
        .score(
            executor.as_mut(),
            &mut groups,
            &|_| Some(0),
            |_, _, _| Ok(()),
            |_| {},
        )
        .expect_err("`A` of the last image cannot be read");
    let text = error.to_string();
    assert!(text.contains("`A`") && text.contains("c.safetensors"), "{text}");
}

// 8. Overlays at another size than the network input keep the photo and scale the boxes.

fn u8s(shape: &[usize], values: &[u8]) -> T {
    T {
        dtype: safetensors::Dtype::U8,
        shape: shape.to_vec(),
        bytes: values.to_vec(),
    }
}

#[test]
fn overlays_at_another_size_keep_the_photo_and_scale_the_boxes() {
    let dir = temp_dir();
    let overlay = |name: &str, rgb: [u8; 3], interleaved: bool| {
        let cache = dir.path().join(format!("{name}.safetensors"));
        let shape = [N, K, H, W];
        let len = N * K * H * W;
        let (pixels, image) = if interleaved {
            ([N, 10, 12, 3], rgb.repeat(N * 120))
        } else {
            let plane: Vec<u8> = rgb.iter().flat_map(|&c| [c; 120]).collect();
            ([N, 3, 10, 12], plane.repeat(N))
        };
        write_safetensors(
            &cache,
            &[
                (
                    "A",
                    f32s(&shape, &noise(1, len).iter().map(|v| v.abs()).collect::<Vec<_>>()),
                ),
                ("G", f32s(&shape, &noise(2, len))),
                ("boxes", f32s(&[N, 4], &[4.0, 3.0, 9.0, 8.0].repeat(N))),
                ("image", u8s(&pixels, &image)),
            ],
            &[("image_size", "10,12")],
        );
        let png = dir.path().join(format!("{name}-png"));
        let out = dir.path().join(format!("{name}.npy"));
        assert_ok(&camc(&[
            "run",
            "gradcam",
            "--cache",
            path_str(&cache),
            "-o",
            path_str(&out),
            "--size",
            "20,24",
            "--png",
            path_str(&png),
        ]));
        image::open(png.join("00000.png")).expect("png").to_rgb8()
    };
    let red = overlay("red", [255, 0, 0], false);
    let blue = overlay("blue", [0, 0, 255], false);
    assert_eq!(red.dimensions(), (24, 20));
    // Away from the box, the photo shows through the heatmap.
    assert_ne!(
        red.get_pixel(0, 19),
        blue.get_pixel(0, 19),
        "the photo was dropped"
    );
    // The box (4,3)–(9,8) at 10×12 is (8,6)–(18,16) at 20×24, drawn 2 pixels wide inside.
    let green = image::Rgb([0, 255, 0]);
    assert_eq!(*red.get_pixel(8, 6), green, "box corner not at its scaled place");
    assert_eq!(*red.get_pixel(17, 15), green);
    assert_ne!(*red.get_pixel(4, 3), green, "box drawn at unscaled coordinates");
    // An interleaved (HWC) image is the same photo.
    assert_eq!(overlay("red-hwc", [255, 0, 0], true), red);
}

// What a new user sees.

#[test]
fn run_ends_with_a_summary_line() {
    let dir = temp_dir();
    let cache = cache_in(dir.path());
    let out = dir.path().join("maps.npy");
    let o = camc(&[
        "run",
        "gradcam",
        "--cache",
        path_str(&cache),
        "-o",
        path_str(&out),
    ]);
    assert_ok(&o);
    let text = stderr(&o);
    let summary = format!("camc run: wrote {N} maps [{N}, 10, 12] to {}", out.display());
    assert!(text.contains(&summary), "{text}");
    assert!(
        text.contains("maps/s") && text.contains("no non-finite values"),
        "{text}"
    );
}

#[test]
fn a_skipped_method_names_the_exporter_option_that_provides_its_tensor() {
    let dir = temp_dir();
    let cache = cache_in(dir.path());
    let o = camc(&[
        "eval",
        "--stdlib",
        "--cache",
        path_str(&cache),
        "--metric",
        "energy",
    ]);
    assert_ok(&o);
    let text = stderr(&o);
    for (method, option) in [
        ("scorecam", "--score"),
        ("ablationcam", "--ablation"),
        ("shapleycam", "--hvp"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("skipping {method}:")))
            .unwrap_or_else(|| panic!("{method} not skipped:\n{text}"));
        assert!(line.contains(option) && line.contains("c.safetensors"), "{line}");
    }
}

#[test]
fn the_report_shows_inputs_classes_a_colorbar_and_where_the_numbers_come_from() {
    let dir = temp_dir();
    let cache = dir.path().join("c.safetensors");
    let shape = [N, K, H, W];
    let len = N * K * H * W;
    let plane: Vec<u8> = (0..3 * 120).map(|i| (i % 251) as u8).collect();
    write_safetensors(
        &cache,
        &[
            (
                "A",
                f32s(&shape, &noise(1, len).iter().map(|v| v.abs()).collect::<Vec<_>>()),
            ),
            ("G", f32s(&shape, &noise(2, len))),
            ("boxes", f32s(&[N, 4], &[1.0, 1.0, 6.0, 5.0].repeat(N))),
            ("image", u8s(&[N, 3, 10, 12], &plane.repeat(N))),
            ("target", i64s(&[N], &[2, 0, 1])),
            (
                "logits",
                f32s(&[N, 3], &[0.0, 0.1, 0.9, 0.8, 0.1, 0.0, 0.0, 0.0, 1.0]),
            ),
        ],
        &[
            ("image_size", "10,12"),
            ("model", "tiny"),
            ("layer", "body.relu2"),
        ],
    );
    let report = dir.path().join("report");
    let o = camc(&[
        "eval",
        "gradcam",
        "--stdlib",
        "--cache",
        path_str(&cache),
        "--metric",
        "loc,energy",
        "--report",
        path_str(&report),
        "--report-images",
        "2",
    ]);
    assert_ok(&o);
    let html = std::fs::read_to_string(report.join("report.html")).expect("report");
    for needle in [
        "model: <b>tiny</b>",
        "layer: <b>body.relu2</b>",
        &format!("camc: <b>{}</b>", env!("CARGO_PKG_VERSION")),
        "date: <b>20",
        "<th>input</th>",
        "<img src=\"input/00001.png\"",
        "target 2 · predicted 2",
        "target 0 · predicted 0",
        "class=\"colorbar\"",
        "<li><b>scorecam</b>",
        "title=\"loc ",
    ] {
        assert!(html.contains(needle), "missing {needle:?}");
    }
    assert!(report.join("input/00000.png").is_file());
}

//! The search engine: it finds Grad-CAM and XGrad-CAM when the metric is agreement with them,
//! finds a formula that localizes on a synthetic cache where Grad-CAM does not, and a resumed
//! search after a kill ends with the same ranking as an uninterrupted one.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::caches::*;

fn camc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camc"))
        .args(args)
        .output()
        .expect("camc runs")
}

fn search(cache: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "search",
        "--cache",
        path_str(cache),
        "--out",
        path_str(out),
        "--backend",
        "interp",
    ];
    args.extend_from_slice(extra);
    let o = camc(&args);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    report_in(out)
}

/// `report.json` of a search folder.
fn report_in(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
        .expect("valid json")
}

/// The two folders hold the same five rank files.
fn assert_same_rank_files(a: &Path, b: &Path) {
    for i in 1..=5 {
        let name = format!("rank-{i:02}.cam");
        assert_eq!(
            std::fs::read_to_string(a.join(&name)).expect("rank file"),
            std::fs::read_to_string(b.join(&name)).expect("rank file"),
        );
    }
}

fn ranked(report: &serde_json::Value) -> Vec<(String, f64)> {
    report["outcome"]["ranked"]
        .as_array()
        .expect("ranked list")
        .iter()
        .map(|s| {
            (
                s["weights"].as_str().unwrap_or("").to_string(),
                s["train"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn golden_cache() -> std::path::PathBuf {
    support::root().join("tests/golden/cache.safetensors")
}

#[test]
fn finds_gradcam_when_the_metric_is_agreement_with_it() {
    let dir = temp_dir();
    let report = search(
        &golden_cache(),
        dir.path(),
        &["--metric", "agree=gradcam", "--budget", "40", "--holdout", "0.25"],
    );
    let best = &ranked(&report)[0];
    assert!(best.1 > 0.9999, "best {best:?}");
    assert!(
        best.0.contains("(G)") && (best.0.starts_with("mean[h,w]") || best.0.starts_with("sum[h,w]")),
        "{best:?}"
    );
    // The winner is a program camc accepts.
    let rank1 = dir.path().join("rank-01.cam");
    assert_eq!(camc(&["check", path_str(&rank1)]).status.code(), Some(0));
}

#[test]
fn gradcam_and_xgradcam_are_reachable_in_the_default_space() {
    use camc_analysis::search::enumerate::Enumerator;
    use camc_analysis::search::probe_set::probes;
    use camc_analysis::search::space::SpaceFile;
    use camc_analysis::search::term::{k, khw, Term, TermOp};
    use camc_compiler::axes::AxisSet;
    use camc_compiler::ops::{BinaryOp, ReduceOp};
    use camc_runtime::cache::Cache;
    let cache = Cache::open(path_str(&golden_cache())).expect("golden cache");
    let space = SpaceFile::default().resolve().expect("default space");
    let (small, full) = probes(&cache, &space.terminals, &[0, 1, 3], 16).expect("probes");
    let mut enumerator = Enumerator::new(space.clone(), &small, &full, 0);
    for size in 1..=7 {
        enumerator.grow(size);
    }
    // The two methods' WEIGHTS written as terms: sum[h,w](G), and
    // sum[h,w](A * G) /+ sum[h,w](A) (XGrad-CAM's protected division).
    let t = |op, ty, size| Term { op, ty, size };
    let terms = vec![
        t(TermOp::Tensor(0), khw(), 1),
        t(TermOp::Tensor(1), khw(), 1),
        t(TermOp::Reduce(ReduceOp::Sum, 1), k(), 2),
        t(TermOp::Binary(BinaryOp::Mul, 0, 1), khw(), 3),
        t(TermOp::Reduce(ReduceOp::Sum, 3), k(), 4),
        t(TermOp::Reduce(ReduceOp::Sum, 0), k(), 2),
        t(TermOp::SafeDiv(4, 5), k(), 7),
    ];
    assert!(terms.iter().all(|t| t.ty != AxisSet::SCALAR));
    let gradcam = enumerator.map_of(&terms, 2).expect("finite map");
    let xgradcam = enumerator.map_of(&terms, 6).expect("finite map");
    let at_gradcam = enumerator
        .position_of_map(gradcam)
        .expect("Grad-CAM is a candidate");
    let at_xgradcam = enumerator
        .position_of_map(xgradcam)
        .expect("XGrad-CAM is a candidate");
    eprintln!(
        "Grad-CAM is candidate {at_gradcam}, XGrad-CAM candidate {at_xgradcam} of {}",
        enumerator.candidates.len()
    );
    assert!(at_gradcam < 10);
}

/// A cache where the box is lit by channel 0, whose gradient is one strong spike (small mean),
/// and a distractor by channel 1, whose gradient is a constant 0.5 (large mean): Grad-CAM
/// weights the distractor, a max-based weight the box.
fn synthetic_cache(path: &Path) {
    let (n, k, h, w) = (12, 3, 8, 8);
    let mut a = vec![0.0f32; n * k * h * w];
    let mut g = vec![0.0f32; n * k * h * w];
    let mut boxes = Vec::new();
    let noise = noise(9, n * k * h * w);
    for i in 0..n {
        let (bx, by) = (i % 5, (i * 3) % 5);
        let (dx, dy) = ((bx + 4) % 8, (by + 4) % 8);
        boxes.extend([bx as f32, by as f32, (bx + 3) as f32, (by + 3) as f32]);
        for y in 0..h {
            for x in 0..w {
                let at = |c: usize| ((i * k + c) * h + y) * w + x;
                if (bx..bx + 3).contains(&x) && (by..by + 3).contains(&y) {
                    a[at(0)] = 1.0;
                }
                if (dx..(dx + 3).min(8)).contains(&x) && (dy..(dy + 3).min(8)).contains(&y) {
                    a[at(1)] = 1.0;
                }
                a[at(2)] = 0.2 * noise[at(2)].abs();
                g[at(1)] = 0.5;
                g[at(2)] = 0.1 * noise[at(0)];
            }
        }
        g[((i * k) * h + by) * w + bx] = 3.0;
    }
    let shape = [n, k, h, w];
    write_safetensors(
        path,
        &[
            ("A", f32s(&shape, &a)),
            ("G", f32s(&shape, &g)),
            ("boxes", f32s(&[n, 4], &boxes)),
        ],
        &[("image_size", "8,8")],
    );
}

#[test]
fn finds_a_formula_that_beats_gradcam_on_a_synthetic_cache() {
    let dir = temp_dir();
    let cache = dir.path().join("synthetic.safetensors");
    synthetic_cache(&cache);
    let out = dir.path().join("out");
    let report = search(&cache, &out, &["--metric", "energy", "--budget", "150"]);
    let best = &report["outcome"]["ranked"][0];
    let gradcam = report["stdlib"]
        .as_array()
        .expect("stdlib rows")
        .iter()
        .find(|r| r["program"] == "gradcam")
        .expect("gradcam row")
        .clone();
    let (best_holdout, gradcam_holdout) = (
        best["holdout"].as_f64().expect("value"),
        gradcam["holdout"].as_f64().expect("value"),
    );
    assert!(best_holdout > 0.9, "best {best} on holdout");
    assert!(
        best_holdout > gradcam_holdout + 0.3,
        "best {best_holdout} vs gradcam {gradcam_holdout}"
    );
    // The report compares rank 1 with the stdlib method best on holdout (energy: higher).
    let (best_stdlib, best_stdlib_holdout) = report["stdlib"]
        .as_array()
        .expect("stdlib rows")
        .iter()
        .filter_map(|r| Some((r["program"].as_str()?.to_string(), r["holdout"].as_f64()?)))
        .fold(
            (String::new(), f64::NEG_INFINITY),
            |a, b| if b.1 > a.1 { b } else { a },
        );
    let versus = &report["versus_stdlib"];
    assert_eq!(versus["best_stdlib"], best_stdlib.as_str(), "{versus}");
    assert_eq!(versus["best_stdlib_holdout"].as_f64(), Some(best_stdlib_holdout));
    assert_eq!(
        versus["margin"].as_f64(),
        Some(best_holdout - best_stdlib_holdout)
    );
}

#[test]
fn resume_after_a_kill_gives_the_same_ranking() {
    let dir = temp_dir();
    let args = ["--metric", "agree=gradcampp", "--budget", "60", "--seed", "7"];
    let whole = dir.path().join("whole");
    let reference = search(&golden_cache(), &whole, &args);
    // A run killed part-way: the checkpoint holds its first line (what the search depends on),
    // the first 25 results and half of the next line.
    let resumed = dir.path().join("resumed");
    std::fs::create_dir_all(&resumed).expect("dir");
    let text = std::fs::read_to_string(whole.join("checkpoint.jsonl")).expect("checkpoint");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 60);
    let mut cut = lines[..26].join("\n");
    cut.push('\n');
    cut.push_str(&lines[26][..lines[26].len() / 2]);
    std::fs::write(resumed.join("checkpoint.jsonl"), cut).expect("write");
    let report = search(&golden_cache(), &resumed, &[&args[..], &["--resume"]].concat());
    assert_eq!(report["outcome"]["resumed"], 25);
    assert_eq!(report["outcome"]["evaluated"], 35);
    assert_eq!(ranked(&report), ranked(&reference));
    assert_same_rank_files(&resumed, &whole);
}

#[test]
fn weighted_objectives_combine_metric_values() {
    let dir = temp_dir();
    let cache = dir.path().join("synthetic.safetensors");
    synthetic_cache(&cache);
    let run = |metric: &str, out: &str| {
        let report = search(
            &cache,
            &dir.path().join(out),
            &["--metric", metric, "--budget", "20"],
        );
        // Every evaluated candidate: ranked, or dropped as a duplicate of a better one.
        let listed = |key: &str| report["outcome"][key].as_array().expect(key).clone();
        listed("ranked")
            .iter()
            .chain(&listed("dropped"))
            .map(|s| {
                (
                    s["weights"].as_str().unwrap_or("").to_string(),
                    s["train"].as_f64(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let energy = run("energy", "a");
    let doubled = run("energy:2,pointing:0", "b");
    let with_complexity = run("energy:1,complexity:0.5", "c");
    let complexity = run("complexity", "d");
    assert_eq!(energy.len(), 20);
    for (weights, value) in &energy {
        let value = value.expect("energy is defined on every image");
        let twice = doubled[weights].expect("value");
        assert!(
            (twice - 2.0 * value).abs() < 1e-9,
            "{weights}: {twice} vs 2 × {value}"
        );
        // complexity is lower-is-better: it counts negatively.
        let mixed = with_complexity[weights].expect("value");
        let c = complexity[weights].expect("value");
        assert!((mixed - (value - 0.5 * c)).abs() < 1e-9, "{weights}: {mixed}");
    }
}

/// A cache whose `A` and `G` carry no location (a flat channel and noise) and whose `recipro`
/// (Recipro-CAM's per-position scores, `[n,h,w]`) marks each image's box.
fn recipro_cache(path: &Path) {
    let (n, k, h, w) = (8, 2, 8, 8);
    let noise = noise(11, 2 * n * k * h * w);
    let mut a = vec![0.0f32; n * k * h * w];
    let mut g = vec![0.0f32; n * k * h * w];
    let mut recipro = vec![0.0f32; n * h * w];
    let mut boxes = Vec::new();
    for i in 0..n {
        let (bx, by) = (i % 5, (i * 3) % 5);
        boxes.extend([bx as f32, by as f32, (bx + 3) as f32, (by + 3) as f32]);
        for y in 0..h {
            for x in 0..w {
                let at = |c: usize| ((i * k + c) * h + y) * w + x;
                a[at(0)] = 1.0;
                a[at(1)] = noise[at(1)].abs();
                g[at(0)] = noise[n * k * h * w + at(0)];
                g[at(1)] = noise[n * k * h * w + at(1)];
                let inside = (bx..bx + 3).contains(&x) && (by..by + 3).contains(&y);
                recipro[(i * h + y) * w + x] = if inside { 0.9 } else { 0.0 };
            }
        }
    }
    let shape = [n, k, h, w];
    write_safetensors(
        path,
        &[
            ("A", f32s(&shape, &a)),
            ("G", f32s(&shape, &g)),
            ("recipro", f32s(&[n, h, w], &recipro)),
            ("boxes", f32s(&[n, 4], &boxes)),
        ],
        &[("image_size", "8,8")],
    );
}

#[test]
fn a_per_position_terminal_such_as_recipro_takes_part_in_the_search() {
    let dir = temp_dir();
    let cache = dir.path().join("recipro.safetensors");
    recipro_cache(&cache);
    let space = dir.path().join("space.toml");
    std::fs::write(&space, "max_size = 4\nterminals = [\"A\", \"G\", \"recipro\"]\n").expect("space");
    let out = dir.path().join("out");
    let report = search(
        &cache,
        &out,
        &[
            "--metric",
            "energy",
            "--budget",
            "200",
            "--space",
            path_str(&space),
        ],
    );
    let best = &report["outcome"]["ranked"][0];
    assert!(
        best["weights"].as_str().expect("weights").contains("recipro"),
        "{best}"
    );
    assert!(
        best["params"]
            .as_array()
            .expect("params")
            .iter()
            .any(|p| p == "recipro: [h,w]"),
        "{best}"
    );
    // Every bit of the winner's map lies in the box (the map is recipro · Σ_k A, up to how the
    // winner scales it); no stdlib method, which cannot read `recipro`, comes close.
    let best_holdout = best["holdout"].as_f64().expect("holdout");
    assert!(best_holdout > 0.999, "{best}");
    for row in report["stdlib"].as_array().expect("stdlib rows") {
        if let Some(holdout) = row["holdout"].as_f64() {
            assert!(holdout < best_holdout - 0.2, "{row} vs {best}");
        }
    }
    let rank1 = out.join("rank-01.cam");
    assert_eq!(camc(&["check", path_str(&rank1)]).status.code(), Some(0));
    let wrong = dir.path().join("wrong.safetensors");
    write_safetensors(
        &wrong,
        &[
            ("A", f32s(&[1, 2, 8, 8], &[1.0; 128])),
            ("G", f32s(&[1, 2, 8, 8], &[1.0; 128])),
            ("recipro", f32s(&[1, 4, 4], &[1.0; 16])),
        ],
        &[("image_size", "8,8")],
    );
    let o = camc(&[
        "search",
        "--cache",
        path_str(&wrong),
        "--out",
        path_str(&dir.path().join("w")),
        "--metric",
        "complexity",
        "--space",
        path_str(&space),
        "--backend",
        "interp",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("recipro") && stderr.contains("[n,h,w]"),
        "{stderr}"
    );
}

/// `--require-class`: every ranked program reads a class-dependent tensor (here `G`), the report
/// says which for each, and the checkpoint of a search without the flag is not resumed by one
/// with it.
#[test]
fn require_class_keeps_only_programs_that_read_a_class_dependent_tensor() {
    let dir = temp_dir();
    let cache = dir.path().join("synthetic.safetensors");
    synthetic_cache(&cache);
    let free = search(
        &cache,
        &dir.path().join("free"),
        &["--metric", "energy", "--budget", "30"],
    );
    let free_ranked = free["outcome"]["ranked"].as_array().expect("ranked").clone();
    assert!(
        free_ranked
            .iter()
            .any(|s| s["class_reads"].as_array().is_some_and(|r| r.is_empty())),
        "without the flag some candidates read only A"
    );
    let out = dir.path().join("class");
    let report = search(
        &cache,
        &out,
        &["--metric", "energy", "--budget", "30", "--require-class"],
    );
    let ranked = report["outcome"]["ranked"].as_array().expect("ranked");
    let dropped = report["outcome"]["dropped"].as_array().expect("dropped");
    assert_eq!(ranked.len() + dropped.len(), 30);
    // Where the time went: enumeration and evaluation within the whole run, two rates.
    let seconds = |key: &str| report["outcome"][key].as_f64().expect("seconds");
    let (whole, enumeration, evaluation) = (
        seconds("seconds"),
        seconds("enumeration_seconds"),
        seconds("evaluation_seconds"),
    );
    assert!(
        enumeration > 0.0 && evaluation > 0.0 && enumeration + evaluation <= whole,
        "{report}"
    );
    let rate = |key: &str| report[key].as_f64().expect("rate");
    assert!(rate("evaluation_candidates_per_second") >= rate("candidates_per_second"));
    for s in ranked {
        let weights = s["weights"].as_str().expect("weights");
        assert!(weights.contains('G'), "{s}");
        assert_eq!(s["class_reads"], serde_json::json!(["G"]), "{s}");
    }
    let again = camc(&[
        "search",
        "--cache",
        path_str(&cache),
        "--out",
        path_str(&dir.path().join("free")),
        "--backend",
        "interp",
        "--metric",
        "energy",
        "--budget",
        "30",
        "--require-class",
        "--resume",
    ]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

/// A cache of random tensors with boxes: `n` images of `k` channels on `h × w`.
fn random_cache(path: &Path, seed: u64, (n, k, h, w): (usize, usize, usize, usize)) {
    let len = n * k * h * w;
    let a: Vec<f32> = noise(seed, len).iter().map(|v| v.abs() * 2.0).collect();
    let g = noise(seed + 1, len);
    let mut boxes = Vec::new();
    for (i, v) in noise(seed + 2, n).iter().enumerate() {
        let x0 = ((v.abs() * 7.0) as usize + i) % (w * 2);
        let y0 = (i * 3) % (h * 2);
        boxes.extend([x0 as f32, y0 as f32, (x0 + w) as f32, (y0 + h + 1) as f32]);
    }
    let shape = [n, k, h, w];
    let size = format!("{},{}", h * 4, w * 4);
    write_safetensors(
        path,
        &[
            ("A", f16s(&shape, &a)),
            ("G", f32s(&shape, &g)),
            ("boxes", f32s(&[n, 4], &boxes)),
        ],
        &[("image_size", size.as_str())],
    );
}

#[test]
fn batched_evaluation_gives_the_scores_of_single_evaluation_on_random_candidate_sets() {
    use camc_analysis::evaluate::MetricData;
    use camc_analysis::metrics::{metric_by_name, Better};
    use camc_analysis::search::driver::{split, Search};
    use camc_analysis::search::enumerate::Enumerator;
    use camc_analysis::search::probe_set::probes;
    use camc_analysis::search::space::SpaceFile;
    use camc_compiler::dims::Dims;
    use camc_compiler::ir::Kernel;
    use camc_runtime::cache::Cache;
    use camc_runtime::exec::cpu::CpuExecutor;
    use camc_runtime::exec::interp::InterpExecutor;
    use camc_runtime::exec::{Executor, Outputs};

    fn interp(kernel: &Kernel, dims: Dims, outputs: Outputs) -> Result<Box<dyn Executor>, String> {
        InterpExecutor::new(kernel, dims, outputs)
            .map(|e| Box::new(e) as Box<dyn Executor>)
            .map_err(|e| e.to_string())
    }
    fn cpu(kernel: &Kernel, dims: Dims, outputs: Outputs) -> Result<Box<dyn Executor>, String> {
        CpuExecutor::new(kernel, dims, outputs)
            .map(|e| Box::new(e) as Box<dyn Executor>)
            .map_err(|e| e.to_string())
    }

    let dir = temp_dir();
    for (seed, sizes) in [(11u64, (9, 4, 5, 6)), (23, (7, 3, 4, 4))] {
        let path = dir.path().join(format!("random-{seed}.safetensors"));
        random_cache(&path, seed, sizes);
        let cache = Cache::open(path_str(&path)).expect("cache");
        let space = SpaceFile {
            max_size: 5,
            probe_images: 2,
            unary: ["relu", "abs", "sqrt"].map(String::from).to_vec(),
            binary: ["+", "-", "*", "/+", "max"].map(String::from).to_vec(),
            ..SpaceFile::default()
        }
        .resolve()
        .expect("space");
        let n = cache.images().expect("images");
        let is_train = split(n, 0.3, seed);
        let train: Vec<usize> = (0..n).filter(|&i| is_train[i]).collect();
        let (small, full) =
            probes(&cache, &space.terminals, &train[..2], space.probe_channels).expect("probes");
        let mut enumerator = Enumerator::new(space.clone(), &small, &full, 0);
        for size in 1..=space.max_size {
            enumerator.grow(size);
        }
        let types: Vec<_> = small.terminals.iter().map(|(ty, _)| *ty).collect();
        // A random candidate set: every candidate with a seeded chance, sizes 1 to 5 alike.
        let chosen: Vec<u32> = enumerator
            .candidates
            .iter()
            .copied()
            .zip(noise(seed + 3, enumerator.candidates.len()))
            .filter(|(_, v)| v.abs() < 0.35)
            .map(|(id, _)| id)
            .take(60)
            .collect();
        assert!(chosen.len() >= 30, "{} candidates", chosen.len());
        for metric in ["energy", "loc", "pointing", "iou", "complexity"] {
            let accumulators = [metric_by_name(metric).expect("metric")];
            let size = vec![sizes.2 * 4, sizes.3 * 4];
            let data = MetricData::load(&cache, &accumulators, size, false).expect("metric data");
            let search = |batched| Search {
                cache: &cache,
                space: space.clone(),
                objective: vec![(accumulators[0].name(), 1.0)],
                metric: metric.into(),
                better: Better::Higher,
                budget: chosen.len(),
                holdout: 0.3,
                seed,
                out: dir.path().join("unused"),
                batch: 4,
                reference: None,
                data: &data,
                scorer: None,
                batched,
                keep: 5,
                pareto: vec![],
            };
            let batched = search(true)
                .evaluate_all(&enumerator.terms, &chosen, &types, &is_train, &interp)
                .expect("batched evaluation")
                .0;
            let mut distinct: Vec<u64> = batched.iter().filter_map(|s| s.train).map(f64::to_bits).collect();
            distinct.sort_unstable();
            distinct.dedup();
            // Pointing scores 0 or 1 per image: few distinct means on a few images.
            let least = if metric == "pointing" { 2 } else { 5 };
            assert!(
                distinct.len() >= least,
                "{metric}: only {} distinct scores",
                distinct.len()
            );
            // Bit for bit the interpreter's (same arithmetic in the same order); the JIT's
            // contractions and post-processing round differently.
            for (backend, factory) in [("interp", &interp as _), ("cpu", &cpu as _)] {
                let single = search(false)
                    .evaluate_all(&enumerator.terms, &chosen, &types, &is_train, factory)
                    .expect("single evaluation")
                    .0;
                for (b, s) in batched.iter().zip(&single) {
                    assert_eq!(b.weights, s.weights);
                    for (x, y) in [(b.train, s.train), (b.holdout, s.holdout)] {
                        let close = match (x, y) {
                            (Some(x), Some(y)) => {
                                (x - y).abs() <= if backend == "interp" { 0.0 } else { 1e-6 }
                            }
                            (x, y) => x == y,
                        };
                        assert!(
                            close,
                            "{metric} on {backend}, seed {seed}: {} batched {x:?}, single {y:?}",
                            b.weights
                        );
                    }
                }
            }
        }
    }
}

/// A cache where a guard-exploiting program wins on the metric: channel 0 is all but dead
/// (1e-7 per pixel) and lies on the box, channel 1 is strong and lies off it. With the
/// weights `1 / (sum[h,w](A) + 1e-7)` the nearly dead channel weighs 10⁶, enough to outshine
/// the strong one only because the guard is 1e-7: with 1e-5 it would weigh 10⁵.
fn guard_cache(path: &Path) {
    let (n, k, h, w) = (6, 2, 8, 8);
    let mut a = vec![0.0f32; n * k * h * w];
    let mut boxes = Vec::new();
    for i in 0..n {
        let (bx, by) = (i % 3, (i * 2) % 3);
        boxes.extend([bx as f32, by as f32, (bx + 3) as f32, (by + 3) as f32]);
        for y in 0..h {
            for x in 0..w {
                let at = |c: usize| ((i * k + c) * h + y) * w + x;
                let on_box = (bx..bx + 3).contains(&x) && (by..by + 3).contains(&y);
                if on_box {
                    a[at(0)] = 1e-7;
                }
                if x >= 5 && y >= 5 {
                    a[at(1)] = 0.5 + 0.1 * (x as f32);
                }
            }
        }
    }
    let shape = [n, k, h, w];
    write_safetensors(
        path,
        &[("A", f32s(&shape, &a)), ("boxes", f32s(&[n, 4], &boxes))],
        &[("image_size", "8,8")],
    );
}

#[test]
fn a_winner_that_lives_on_the_guard_is_dropped_and_reported() {
    let dir = temp_dir();
    let cache = dir.path().join("guard.safetensors");
    guard_cache(&cache);
    let space = dir.path().join("space.toml");
    std::fs::write(
        &space,
        "max_size = 4\nterminals = [\"A\"]\nconstants = [1.0]\nunary = [\"relu\"]\nbinary = [\"*\", \"/+\"]\nreductions = [\"sum\", \"max\"]\nprobe_images = 2\n",
    )
    .expect("space");
    let out = dir.path().join("out");
    let report = search(
        &cache,
        &out,
        &[
            "--metric",
            "energy",
            "--budget",
            "50",
            "--holdout",
            "0.34",
            "--space",
            path_str(&space),
        ],
    );
    let dropped = report["outcome"]["dropped"].as_array().expect("dropped").clone();
    let reason_of = |weights: &str| {
        dropped
            .iter()
            .find(|d| d["weights"] == weights)
            .map(|d| d["reason"].as_str().unwrap_or("").to_string())
    };
    let exploit = "(1 / (sum[h,w](A) + 1e-7))";
    assert_eq!(reason_of(exploit).as_deref(), Some("guard"), "{dropped:?}");
    let ranked = ranked(&report);
    let exploit_train = dropped.iter().find(|d| d["weights"] == exploit).expect("listed")["train"]
        .as_f64()
        .expect("train");
    // Without the check it would have been rank 1.
    assert!(exploit_train > ranked[0].1, "{exploit_train} vs {:?}", ranked[0]);
    assert!(!ranked.iter().any(|(w, _)| w == exploit));
    // Duplicates name a program ranked above them, which stays.
    let same_map: Vec<_> = dropped.iter().filter(|d| d["reason"] == "same_map").collect();
    assert!(!same_map.is_empty());
    for d in same_map {
        let kept = d["detail"].as_str().expect("detail");
        let position = ranked
            .iter()
            .position(|(w, _)| w == kept)
            .expect("the kept one is ranked");
        assert!(ranked[position].1 >= d["train"].as_f64().expect("train"));
    }
    let o = camc(&[
        "search",
        "--cache",
        path_str(&cache),
        "--out",
        path_str(&dir.path().join("again")),
        "--backend",
        "interp",
        "--metric",
        "energy",
        "--budget",
        "50",
        "--holdout",
        "0.34",
        "--space",
        path_str(&space),
    ]);
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(printed.contains("that depend on the 1e-7 guard"), "{printed}");
}

#[test]
fn resume_after_a_real_kill_gives_the_uninterrupted_result() {
    let dir = temp_dir();
    let cache = dir.path().join("synthetic.safetensors");
    synthetic_cache(&cache);
    // One candidate at a time, each flushed to the checkpoint as it is scored.
    let args = [
        "--metric",
        "energy",
        "--budget",
        "600",
        "--evaluation",
        "single",
        "--backend",
        "interp",
    ];
    fn run<'a>(cache: &'a Path, out: &'a Path, args: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["search", "--cache", path_str(cache), "--out", path_str(out)];
        all.extend_from_slice(args);
        all.extend_from_slice(extra);
        all
    }
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_camc"))
        .args(run(&cache, &killed, &args, &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("camc starts");
    let checkpoint = killed.join("checkpoint.jsonl");
    let lines = || std::fs::read_to_string(&checkpoint).map_or(0, |t| t.lines().count());
    let began = std::time::Instant::now();
    while lines() < 40 && began.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SIGKILL: no chance to flush or clean up.
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the search finished before the kill");
    let at_kill = lines();
    assert!((40..601).contains(&at_kill), "{at_kill} lines");

    let o = camc(&run(&cache, &killed, &args, &["--resume"]));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let resumed = report_in(&killed);
    assert!(resumed["outcome"]["resumed"].as_u64().expect("resumed") >= 39);
    let whole = dir.path().join("whole");
    let o = camc(&run(&cache, &whole, &args, &[]));
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let reference = report_in(&whole);
    assert_eq!(ranked(&resumed), ranked(&reference));
    assert_eq!(resumed["outcome"]["dropped"], reference["outcome"]["dropped"]);
    assert_same_rank_files(&killed, &whole);
}

#[test]
fn the_pareto_front_equals_a_brute_force_front_over_the_evaluated_candidates() {
    let dir = temp_dir();
    let cache = dir.path().join("synthetic.safetensors");
    synthetic_cache(&cache);
    let out = dir.path().join("out");
    let o = camc(&[
        "search",
        "--cache",
        path_str(&cache),
        "--out",
        path_str(&out),
        "--backend",
        "interp",
        "--metric",
        "energy",
        "--budget",
        "150",
        "--pareto",
        "energy,complexity",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(
        printed.contains("Pareto front of energy and complexity"),
        "{printed}"
    );
    // Every evaluated candidate with its (energy ↑, complexity ↓) on train, from the checkpoint.
    let checkpoint = std::fs::read_to_string(out.join("checkpoint.jsonl")).expect("checkpoint");
    let all: Vec<(String, f64, f64)> = checkpoint
        .lines()
        .skip(1)
        .map(|line| {
            let s: serde_json::Value = serde_json::from_str(line).expect("json line");
            let value = |m: usize| s["pareto"][m][0].as_f64().expect("train value");
            (
                s["weights"].as_str().expect("weights").to_string(),
                value(0),
                value(1),
            )
        })
        .collect();
    assert_eq!(all.len(), 150);
    let dominated = |(e, c): (f64, f64)| {
        all.iter()
            .any(|&(_, e2, c2)| e2 >= e && c2 <= c && (e2 > e || c2 < c))
    };
    let mut brute: Vec<(u64, u64)> = all
        .iter()
        .filter(|&&(_, e, c)| !dominated((e, c)))
        .map(|&(_, e, c)| (e.to_bits(), c.to_bits()))
        .collect();
    brute.sort_unstable();
    brute.dedup();
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("pareto.json")).expect("pareto.json"))
            .expect("json");
    assert_eq!(report["metrics"], serde_json::json!(["energy", "complexity"]));
    assert_eq!(report["better"], serde_json::json!(["higher", "lower"]));
    let front = report["front"].as_array().expect("front");
    let mut found: Vec<(u64, u64)> = front
        .iter()
        .map(|f| {
            let value = |m: usize| f["train"][m].as_f64().expect("value").to_bits();
            (value(0), value(1))
        })
        .collect();
    // Best first on energy.
    assert!(found
        .windows(2)
        .all(|w| f64::from_bits(w[0].0) >= f64::from_bits(w[1].0)));
    found.sort_unstable();
    assert_eq!(found, brute);
    assert!(brute.len() >= 2, "a front of one point tests little: {brute:?}");
    for (i, f) in front.iter().enumerate() {
        let file = out.join(format!("pareto-{:02}.cam", i + 1));
        assert_eq!(f["file"], format!("pareto-{:02}.cam", i + 1));
        let text = std::fs::read_to_string(&file).expect("pareto file");
        assert!(text.contains(f["weights"].as_str().expect("weights")), "{text}");
        // Each front program is a program camc runs.
        let o = camc(&["check", path_str(&file)]);
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(!out.join(format!("pareto-{:02}.cam", front.len() + 1)).exists());
}

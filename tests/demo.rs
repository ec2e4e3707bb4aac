//! The README's demo: on `examples/data/demo16.safetensors` (the demo CNN at `features.relu3`,
//! 16×16 maps) classic methods localize some digits (`loc_acc` > 0), and the program that
//! `camc search --metric loc` finds there (the README's rank-01) localizes better than every
//! one of them, in mean IoU (`loc`) and in the fraction of images with IoU ≥ 0.5 (`loc_acc`).

mod support;

use std::collections::HashMap;
use std::process::Command;
use support::caches::{path_str, temp_dir};

const CACHE: &str = "examples/data/demo16.safetensors";

/// rank-01 of `camc search --cache examples/data/demo16.safetensors --metric loc --budget 300`,
/// as the README shows it.
const WINNER: &str = "relu(sum[k](relu(A - 2) * A))";

const CLASSIC: [&str; 6] = [
    "gradcam",
    "gradcampp",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigencam",
];

/// `(program, metric) -> value` from `camc eval --json`.
fn eval(programs: &[&str], json: &std::path::Path) -> HashMap<(String, String), f64> {
    let cache = support::root().join(CACHE);
    let mut args = vec!["eval"];
    args.extend_from_slice(programs);
    args.extend_from_slice(&["--cache", path_str(&cache), "--metric", "loc", "--backend", "cpu"]);
    args.extend_from_slice(&["--json", path_str(json)]);
    let out = Command::new(env!("CARGO_BIN_EXE_camc"))
        .args(&args)
        .output()
        .expect("camc runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).expect("json written")).expect("valid json");
    rows.as_array()
        .expect("a list of rows")
        .iter()
        .map(|row| {
            assert_eq!(row["images"].as_u64(), Some(96), "{row}");
            let key = (
                row["program"].as_str().expect("program").to_string(),
                row["metric"].as_str().expect("metric").to_string(),
            );
            (key, row["value"].as_f64().expect("a value"))
        })
        .collect()
}

#[test]
fn the_search_winner_localizes_better_than_every_classic_method() {
    let dir = temp_dir();
    let winner = dir.path().join("winner.cam");
    std::fs::write(&winner, format!("cam winner(A: [k,h,w]) = {WINNER}\n")).expect("write program");
    let mut programs = vec![path_str(&winner)];
    programs.extend_from_slice(&CLASSIC);
    let values = eval(&programs, &dir.path().join("metrics.json"));
    let value = |program: &str, metric: &str| values[&(program.to_string(), metric.to_string())];

    let localizing: Vec<&str> = CLASSIC
        .iter()
        .copied()
        .filter(|m| value(m, "loc_acc") > 0.0)
        .collect();
    assert!(
        localizing.len() >= 3,
        "classic methods with loc_acc > 0: {localizing:?}"
    );
    for metric in ["loc", "loc_acc"] {
        let best = CLASSIC
            .iter()
            .map(|m| (value(m, metric), *m))
            .fold((f64::NEG_INFINITY, ""), |a, b| if b.0 > a.0 { b } else { a });
        let won = value(path_str(&winner), metric);
        assert!(
            won > best.0 + 0.05,
            "{metric}: winner {won:.4}, best classic {} {:.4}",
            best.1,
            best.0
        );
    }
}

#[test]
fn the_readme_shows_this_cache_and_winner() {
    let readme = std::fs::read_to_string(support::root().join("README.md")).expect("README.md");
    assert!(readme.contains(CACHE), "README does not use {CACHE}");
    assert!(
        readme.contains(WINNER),
        "README does not show the winner {WINNER}"
    );
}

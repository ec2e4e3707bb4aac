//! What a finished search leaves: the stdlib methods scored on the same split (the baselines),
//! `rank-NN.cam` files for the winners, `report.json`, and the summary `camc search` prints.
//! Shared by the command line and the Python package (`camc._camc.search`).

use super::driver::{split, ExecutorFactory, Outcome, Scored, Search};
use super::scorer::ScoreError;
use crate::metrics::Better;
use camc_runtime::cache::Binding;
use camc_runtime::output::write_file;
use camc_runtime::program::stdlib_kernels;
use serde::Serialize;
use std::fmt::Write;

/// A stdlib method scored on the search's split.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Baseline {
    pub program: String,
    pub train: Option<f64>,
    pub holdout: Option<f64>,
}

/// Every stdlib method the cache can run, scored like the candidates on the same split. A
/// method whose program cannot run (or that a metric cannot score) is left out; a failure of
/// the search's external scorer is an error.
pub fn stdlib_baselines(search: &Search, factory: ExecutorFactory) -> Result<Vec<Baseline>, String> {
    let n = search.cache.images().unwrap_or(0);
    let is_train = split(n, search.holdout, search.seed);
    let mut rows = Vec::new();
    for (method, kernel) in stdlib_kernels() {
        if Binding::new(search.cache, &kernel).is_err() {
            continue;
        }
        match search.try_score_kernel(&kernel, &is_train, factory) {
            Ok((train, holdout)) => rows.push(Baseline {
                program: method.to_string(),
                train,
                holdout,
            }),
            Err(ScoreError::Scorer(message)) => return Err(message),
            Err(ScoreError::Program(_)) => {}
        }
    }
    Ok(rows)
}

/// Rank 1 against the stdlib method that scores best on the holdout images.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VersusStdlib {
    pub winner_holdout: f64,
    pub best_stdlib: String,
    pub best_stdlib_holdout: f64,
    /// How much better rank 1 is on holdout, in the metric's direction (negative: it falls
    /// short by that much).
    pub margin: f64,
}

/// The comparison of rank 1 with the best stdlib method on holdout, when both have a value.
pub fn versus_stdlib(search: &Search, outcome: &Outcome, baselines: &[Baseline]) -> Option<VersusStdlib> {
    let winner = outcome.ranked.first()?.holdout?;
    let signed = |v: f64| match search.better {
        Better::Higher => v,
        Better::Lower => -v,
    };
    // The first of equals, in stdlib order.
    let best = baselines
        .iter()
        .filter_map(|b| Some((b, b.holdout?)))
        .reduce(|best, next| {
            if signed(next.1) > signed(best.1) {
                next
            } else {
                best
            }
        })?;
    Some(VersusStdlib {
        winner_holdout: winner,
        best_stdlib: best.0.program.clone(),
        best_stdlib_holdout: best.1,
        margin: signed(winner) - signed(best.1),
    })
}

fn shown(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.4}"))
}

/// Writes the best `keep` programs as `rank-NN.cam` (each with a header saying how it scored),
/// removes rank files an earlier run of this search kept beyond those, and writes
/// `report.json`, all in the search's folder.
pub fn write_results(
    search: &Search,
    outcome: &Outcome,
    baselines: &[Baseline],
    keep: usize,
) -> Result<(), String> {
    write_programs(
        search,
        outcome,
        "rank",
        &outcome.ranked[..outcome.ranked.len().min(keep)],
    )?;
    write_programs(search, outcome, "pareto", &outcome.pareto_front)?;
    if !search.pareto.is_empty() {
        let text = serde_json::to_string_pretty(&pareto_report(search, outcome))
            .map_err(|e| format!("cannot write pareto.json: {e}"))?
            + "\n";
        write_file(&search.out.join("pareto.json"), text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let text = serde_json::to_string_pretty(&report(search, outcome, baselines))
        .map_err(|e| format!("cannot write the report: {e}"))?
        + "\n";
    write_file(&search.out.join("report.json"), text.as_bytes()).map_err(|e| e.to_string())
}

/// `DIR/{prefix}-NN.cam` for `programs`, each with a header giving its values; files of the
/// same prefix left by an earlier run that wrote more are removed.
fn write_programs(
    search: &Search,
    outcome: &Outcome,
    prefix: &str,
    programs: &[Scored],
) -> Result<(), String> {
    for (i, winner) in programs.iter().enumerate() {
        let name = format!("{prefix}_{:02}", i + 1);
        let pareto = match search.pareto.as_slice() {
            [] => String::new(),
            metrics => format!(
                "# {}\n",
                metrics
                    .iter()
                    .zip(&winner.pareto)
                    .map(|(m, (train, holdout))| format!(
                        "{m}: train {}, holdout {}",
                        shown(*train),
                        shown(*holdout)
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        };
        let text = format!(
            "# camc search: {prefix} {} for metric `{}` ({} better)\n# train {} on {} images, holdout {} on {} images\n{pareto}# size {}; cache {}; seed {}; holdout fraction {}\n# as enumerated (and scored): relu(sum[k]({} * A))\n{}",
            i + 1,
            search.metric,
            search.better.as_str(),
            shown(winner.train),
            outcome.train_images,
            shown(winner.holdout),
            outcome.holdout_images,
            winner.size,
            search.cache.spec,
            search.seed,
            search.holdout,
            winner.weights,
            winner.program(&name)
        );
        let path = search.out.join(format!("{prefix}-{:02}.cam", i + 1));
        write_file(&path, text.as_bytes()).map_err(|e| e.to_string())?;
    }
    for rank in programs.len() + 1.. {
        let path = search.out.join(format!("{prefix}-{rank:02}.cam"));
        if std::fs::remove_file(&path).is_err() {
            break;
        }
    }
    Ok(())
}

/// `pareto.json`: the two metrics, their directions and the front, best first on the first.
fn pareto_report(search: &Search, outcome: &Outcome) -> serde_json::Value {
    let front: Vec<serde_json::Value> = outcome
        .pareto_front
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "file": format!("pareto-{:02}.cam", i + 1),
                "weights": s.weights,
                "simplified": s.simplified,
                "size": s.size,
                "class_reads": s.class_reads,
                "train": s.pareto.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
                "holdout": s.pareto.iter().map(|(_, h)| *h).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "metrics": search.pareto,
        "better": search.pareto_directions().iter().map(|b| b.as_str()).collect::<Vec<_>>(),
        "evaluated": outcome.evaluated + outcome.resumed,
        "front": front,
    })
}

/// `report.json`'s contents; `scorer` says when the maps were scored outside camc.
fn report(search: &Search, outcome: &Outcome, baselines: &[Baseline]) -> serde_json::Value {
    let seconds = outcome.seconds.max(1e-9);
    let images = outcome.train_images + outcome.holdout_images;
    let mut report = serde_json::json!({
        "metric": search.metric,
        "better": search.better.as_str(),
        "cache": search.cache.spec,
        "seed": search.seed,
        "holdout_fraction": search.holdout,
        "budget": search.budget,
        "space": {
            "max_size": search.space.max_size,
            "terminals": search.space.terminals,
            "constants": search.space.constants,
        },
        "outcome": outcome,
        "candidates_per_second": outcome.evaluated as f64 / seconds,
        "image_evaluations_per_second": (outcome.evaluated * images) as f64 / seconds,
        "evaluation_candidates_per_second": outcome.evaluated as f64 / outcome.evaluation_seconds.max(1e-9),
        "stdlib": baselines,
        "versus_stdlib": versus_stdlib(search, outcome, baselines),
    });
    if let (Some(_), Some(fields)) = (search.scorer, report.as_object_mut()) {
        fields.insert("scorer".into(), "model".into());
    }
    report
}

/// What `camc search` prints when it is done: the pruning and speed, the best five programs
/// and the stdlib baselines, one per line.
pub fn summary(search: &Search, outcome: &Outcome, baselines: &[Baseline]) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut text, search, outcome, baselines);
    text
}

fn write_summary(
    text: &mut String,
    search: &Search,
    outcome: &Outcome,
    baselines: &[Baseline],
) -> std::fmt::Result {
    let p = &outcome.pruning;
    writeln!(
        text,
        "search: {} terms built; pruned {} syntactically, {} non-finite, {} equivalent on the probe, {} with the same map; {} candidates, {} evaluated ({} from checkpoint) in {:.1}s ({:.1} candidates/s)",
        p.built, p.syntactic, p.non_finite, p.equivalent, p.same_map, p.candidates, outcome.evaluated + outcome.resumed, outcome.resumed, outcome.seconds,
        outcome.evaluated as f64 / outcome.seconds.max(1e-9)
    )?;
    let t = &outcome.timings;
    writeln!(
        text,
        "time: enumeration {:.1}s (same-map pruning {:.1}s), evaluation {:.1}s (thread-seconds: compile {:.1}, maps {:.1}, metric {:.1}), vetting {:.1}s; {:.0} candidates/s of evaluation",
        outcome.enumeration_seconds,
        outcome.pruning_seconds,
        outcome.evaluation_seconds,
        t.compile,
        t.evaluate,
        t.metric,
        outcome.vetting_seconds,
        outcome.evaluated as f64 / outcome.evaluation_seconds.max(1e-9)
    )?;
    writeln!(
        text,
        "metric {} ({} better); train {} images, holdout {}",
        search.metric,
        search.better.as_str(),
        outcome.train_images,
        outcome.holdout_images
    )?;
    writeln!(text, "{:<10} {:>10} {:>10}  program", "rank", "train", "holdout")?;
    for (i, s) in outcome.ranked.iter().take(5).enumerate() {
        writeln!(
            text,
            "{:<10} {:>10} {:>10}  {}",
            format!("rank-{:02}", i + 1),
            shown(s.train),
            shown(s.holdout),
            s.map_expression()
        )?;
    }
    if !outcome.dropped.is_empty() {
        let count = |reason: &str| outcome.dropped.iter().filter(|d| d.reason == reason).count();
        writeln!(
            text,
            "dropped from the top ranks: {} with the same map as a better rank, {} that depend on the 1e-7 guard of /+ (report.json lists them)",
            count("same_map"),
            count("guard")
        )?;
    }
    if let [a, b] = search.pareto.as_slice() {
        writeln!(
            text,
            "Pareto front of {a} and {b} ({} of {} candidates; DIR/pareto.json, pareto-NN.cam):",
            outcome.pareto_front.len(),
            outcome.evaluated + outcome.resumed
        )?;
        writeln!(
            text,
            "{:<10} {:>10} {:>10}  program",
            "",
            format!("{a}"),
            format!("{b}")
        )?;
        for (i, s) in outcome.pareto_front.iter().enumerate() {
            let value = |m: usize| shown(s.pareto.get(m).and_then(|(train, _)| *train));
            writeln!(
                text,
                "{:<10} {:>10} {:>10}  {}",
                format!("pareto-{:02}", i + 1),
                value(0),
                value(1),
                s.map_expression()
            )?;
        }
    }
    if let Some(best) = outcome.ranked.first() {
        match best.class_reads.as_slice() {
            [] => writeln!(
                text,
                "rank-01 reads no class-dependent tensor: its map is the same for every class (--require-class keeps only those that do)"
            )?,
            reads => writeln!(text, "rank-01 depends on the class through {}", reads.join(", "))?,
        }
    }
    for b in baselines {
        writeln!(
            text,
            "{:<10} {:>10} {:>10}  stdlib",
            b.program,
            shown(b.train),
            shown(b.holdout)
        )?;
    }
    if let Some(v) = versus_stdlib(search, outcome, baselines) {
        let verdict = if v.margin > 0.0 {
            "beats every stdlib method"
        } else {
            "falls short of the best stdlib method"
        };
        writeln!(
            text,
            "holdout: rank-01 {} ({:.4} vs {} {:.4}; margin {:+.4})",
            verdict, v.winner_holdout, v.best_stdlib, v.best_stdlib_holdout, v.margin
        )?;
    }
    Ok(())
}

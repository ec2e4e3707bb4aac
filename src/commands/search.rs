//! `camc search --cache C --metric M --out DIR`: synthesize programs
//! `relu(sum[k](WEIGHTS * A))` that score best on a metric (docs/search.md).

use super::backend::{self, Backend};
use super::eval::metric_failure;
use super::{outputs, program, sizes};
use crate::output;
use crate::progress;
use crate::Reported;
use camc_analysis::evaluate::MetricData;
use camc_analysis::metrics::{metric_by_name, Better};
use camc_analysis::search::checkpoint::Start;
use camc_analysis::search::driver::{split, ExecutorFactory, Outcome, Search};
use camc_analysis::search::space::SpaceFile;
use camc_compiler::opt::Level;
use camc_runtime::cache::{Binding, Cache};
use camc_runtime::output::write_file;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    cache: String,
    /// A metric (loc iou pointing energy ad_feat ic_feat ag_feat complexity); `agree=PROGRAM`: mean Pearson
    /// correlation with that program's heatmaps; or a weighted sum `loc:1,energy:0.5` (a
    /// lower-is-better metric counts negatively).
    #[arg(long)]
    metric: String,
    /// Folder for rank-NN.cam, report.json and the checkpoint.
    #[arg(long)]
    out: PathBuf,
    /// Candidates to evaluate fully.
    #[arg(long, default_value_t = 200)]
    budget: usize,
    /// Largest WEIGHTS expression (overrides the space file).
    #[arg(long)]
    max_size: Option<usize>,
    /// Fraction of images held out from selection.
    #[arg(long, default_value_t = 0.3)]
    holdout: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue from DIR/checkpoint.jsonl (only a checkpoint of the same search: same cache,
    /// metric, seed, holdout and space).
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Start over in a folder that holds an earlier search (its checkpoint, rank files and
    /// report are removed).
    #[arg(long)]
    force: bool,
    /// The search space (TOML); defaults in docs/search.md.
    #[arg(long)]
    space: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// How many winners to write as rank-NN.cam.
    #[arg(long, default_value_t = 5)]
    keep: usize,
}

fn fail(message: impl std::fmt::Display) -> Reported {
    output::error(&message.to_string());
    Reported
}

pub fn run(args: Args) -> Result<(), Reported> {
    if !(0.0..1.0).contains(&args.holdout) {
        return Err(fail("--holdout must be in [0, 1)"));
    }
    let mut space_file = match &args.space {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?;
            SpaceFile::parse(&text).map_err(|e| fail(format!("`{}`: {e}", path.display())))?
        }
        None => SpaceFile::default(),
    };
    if let Some(max) = args.max_size {
        space_file.max_size = max;
    }
    let space = space_file.resolve().map_err(fail)?;
    let cache = Cache::open(&args.cache).map_err(fail)?;
    let size = sizes::for_metrics(&cache)?;
    let mut others = vec![];
    if let Some(space) = &args.space {
        others.push(space.as_path());
    }
    outputs::check(
        &outputs::inputs(&[&cache], &[], &others),
        [Some(args.out.as_path())],
    )?;
    let (objective, reference_program) = parse_objective(&args.metric)?;
    let better = match &objective[..] {
        [(name, _)] => metric_by_name(name).map_err(metric_failure)?.better(),
        _ => Better::Higher,
    };
    let accumulators = objective
        .iter()
        .map(|(name, _)| metric_by_name(name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    let data =
        MetricData::load(&cache, &accumulators, size.clone(), reference_program.is_some()).map_err(fail)?;
    let reference = match &reference_program {
        Some(program) => Some(reference_maps(program, &cache, &size, args.backend)?),
        None => None,
    };
    let backend_choice = args.backend;
    let factory = move |kernel: &camc_compiler::ir::Kernel, dims, outputs| {
        backend::executor(backend_choice, kernel, dims, outputs)
            .map_err(|_| "cannot create the executor (see the error above)".to_string())
    };
    let search = Search {
        cache: &cache,
        space,
        objective,
        metric: args.metric.clone(),
        better,
        budget: args.budget,
        holdout: args.holdout,
        seed: args.seed,
        out: args.out.clone(),
        batch: 64,
        reference: reference.as_deref(),
        data: &data,
    };
    let start = match (args.resume, args.force) {
        (true, _) => Start::Resume,
        (_, true) => Start::Force,
        _ => Start::Fresh,
    };
    let bar = progress::bar(args.budget as u64, "candidates");
    let outcome = search
        .run(&factory, start, |done, total, best| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if let Some(best) = best {
                bar.set_message(format!(
                    "best {:.4}: {}",
                    best.train.unwrap_or(f64::NAN),
                    best.weights
                ));
            }
        })
        .map_err(fail)?;
    bar.finish_and_clear();
    let baselines = stdlib_baselines(&search, &factory);
    write_results(&args, &search, &outcome, &baselines)?;
    print_summary(&args.metric, better, &outcome, &baselines);
    Ok(())
}

/// Metrics with their weights.
type Objective = Vec<(&'static str, f64)>;

/// `--metric`: `M`, `agree=PROGRAM` (as `robust` against PROGRAM's maps), or `M:W,M:W...`.
fn parse_objective(text: &str) -> Result<(Objective, Option<String>), Reported> {
    if let Some(program) = text.strip_prefix("agree=") {
        return Ok((vec![("robust", 1.0)], Some(program.to_string())));
    }
    let mut objective = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = match part.split_once(':') {
            Some((name, weight)) => {
                let weight: f64 = weight
                    .trim()
                    .parse()
                    .map_err(|_| fail(format!("`{part}`: the weight must be a number")))?;
                (name.trim(), weight)
            }
            None => (part, 1.0),
        };
        let metric = metric_by_name(name).map_err(metric_failure)?;
        if metric.name() == "robust" {
            return Err(fail(
                "`robust` needs a second cache; search with `agree=PROGRAM` instead",
            ));
        }
        objective.push((metric.name(), weight));
    }
    if objective.is_empty() {
        return Err(fail("no metric given"));
    }
    Ok((objective, None))
}

fn reference_maps(
    program: &str,
    cache: &Cache,
    size: &[usize],
    backend: Backend,
) -> Result<Vec<f32>, Reported> {
    let resolved = program::resolve(program)?;
    let kernel = program::compile(&resolved, &HashMap::new(), Level::Exact)?;
    super::eval::maps_of(cache, &kernel, backend, size, 64)
}

/// Every stdlib method the cache can run, scored on the same split: `(name, train, holdout)`.
fn stdlib_baselines(search: &Search, factory: ExecutorFactory) -> Vec<(String, Option<f64>, Option<f64>)> {
    let n = search.cache.images().unwrap_or(0);
    let is_train = split(n, search.holdout, search.seed);
    let mut rows = Vec::new();
    for (method, kernel) in program::stdlib_kernels() {
        if Binding::new(search.cache, &kernel).is_err() {
            continue;
        }
        if let Ok((train, holdout)) = search.score_kernel(&kernel, &is_train, factory) {
            rows.push((method.to_string(), train, holdout));
        }
    }
    rows
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.4}"))
}

fn write_results(
    args: &Args,
    search: &Search,
    outcome: &Outcome,
    baselines: &[(String, Option<f64>, Option<f64>)],
) -> Result<(), Reported> {
    for (i, winner) in outcome.ranked.iter().take(args.keep).enumerate() {
        let name = format!("rank_{:02}", i + 1);
        let text = format!(
            "# camc search: rank {} for metric `{}` ({} better)\n# train {} on {} images, holdout {} on {} images\n# size {}; cache {}; seed {}; holdout fraction {}\n{}",
            i + 1,
            args.metric,
            search.better.as_str(),
            fmt(winner.train),
            outcome.train_images,
            fmt(winner.holdout),
            outcome.holdout_images,
            winner.size,
            args.cache,
            args.seed,
            args.holdout,
            winner.program(&name)
        );
        let path = args.out.join(format!("rank-{:02}.cam", i + 1));
        write_file(&path, text.as_bytes()).map_err(fail)?;
    }
    // Rank files of an earlier run of this search that kept more.
    let written = outcome.ranked.len().min(args.keep);
    for rank in written + 1.. {
        let path = args.out.join(format!("rank-{rank:02}.cam"));
        if std::fs::remove_file(&path).is_err() {
            break;
        }
    }
    let report = serde_json::json!({
        "metric": args.metric,
        "better": search.better.as_str(),
        "cache": args.cache,
        "seed": args.seed,
        "holdout_fraction": args.holdout,
        "budget": args.budget,
        "space": {
            "max_size": search.space.max_size,
            "terminals": search.space.terminals,
            "constants": search.space.constants,
        },
        "outcome": outcome,
        "candidates_per_second": outcome.evaluated as f64 / outcome.seconds.max(1e-9),
        "image_evaluations_per_second": (outcome.evaluated * (outcome.train_images + outcome.holdout_images)) as f64 / outcome.seconds.max(1e-9),
        "stdlib": baselines.iter().map(|(m, t, h)| serde_json::json!({"program": m, "train": t, "holdout": h})).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&report).unwrap_or_default() + "\n";
    write_file(&args.out.join("report.json"), text.as_bytes()).map_err(fail)
}

fn print_summary(
    metric: &str,
    better: Better,
    outcome: &Outcome,
    baselines: &[(String, Option<f64>, Option<f64>)],
) {
    let p = &outcome.pruning;
    println!(
        "search: {} terms built; pruned {} syntactically, {} non-finite, {} equivalent on the probe, {} with the same map; {} candidates, {} evaluated ({} from checkpoint) in {:.1}s ({:.1} candidates/s)",
        p.built, p.syntactic, p.non_finite, p.equivalent, p.same_map, p.candidates, outcome.evaluated + outcome.resumed, outcome.resumed, outcome.seconds,
        outcome.evaluated as f64 / outcome.seconds.max(1e-9)
    );
    println!(
        "metric {metric} ({} better); train {} images, holdout {}",
        better.as_str(),
        outcome.train_images,
        outcome.holdout_images
    );
    println!("{:<10} {:>10} {:>10}  program", "rank", "train", "holdout");
    for (i, s) in outcome.ranked.iter().take(5).enumerate() {
        println!(
            "{:<10} {:>10} {:>10}  relu(sum[k]({} * A))",
            format!("rank-{:02}", i + 1),
            fmt(s.train),
            fmt(s.holdout),
            s.weights
        );
    }
    for (name, train, holdout) in baselines {
        println!("{:<10} {:>10} {:>10}  stdlib", name, fmt(*train), fmt(*holdout));
    }
}

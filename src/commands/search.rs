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
use camc_analysis::search::driver::Search;
use camc_analysis::search::results::{stdlib_baselines, summary, write_results};
use camc_analysis::search::space::SpaceFile;
use camc_compiler::opt::Level;
use camc_runtime::cache::Cache;
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
    /// Also score every candidate on two metrics and write their Pareto front (the candidates
    /// no other beats on both, on train) as DIR/pareto.json and DIR/pareto-NN.cam.
    #[arg(long, value_name = "A,B")]
    pareto: Option<String>,
    /// How candidates are evaluated: `batched` (many at once, shared sub-terms, metric in the
    /// same pass, on the host) or `single` (each compiled and run by --backend on its own).
    /// Metrics that read `A` (ad_feat, ic_feat, ag_feat) are always evaluated singly.
    #[arg(long, value_enum, default_value = "batched")]
    evaluation: Evaluation,
    /// Keep only programs that read a class-dependent tensor (G, W, score, ablation, H,
    /// recipro, or one the space's `class_terminals` names): maps that change with the class.
    #[arg(long)]
    require_class: bool,
}

#[derive(Copy, Clone, PartialEq, Eq, clap::ValueEnum)]
enum Evaluation {
    Batched,
    Single,
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
    space_file.require_class |= args.require_class;
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
    let pareto = match &args.pareto {
        Some(text) => parse_pareto(text)?,
        None => Vec::new(),
    };
    let better = match &objective[..] {
        [(name, _)] => metric_by_name(name).map_err(metric_failure)?.better(),
        _ => Better::Higher,
    };
    let accumulators = objective
        .iter()
        .map(|(name, _)| *name)
        .chain(pareto.iter().copied())
        .map(metric_by_name)
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
        scorer: None,
        batched: args.evaluation == Evaluation::Batched,
        keep: args.keep,
        pareto,
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
    let baselines = stdlib_baselines(&search, &factory).map_err(fail)?;
    write_results(&search, &outcome, &baselines, args.keep).map_err(fail)?;
    print!("{}", summary(&search, &outcome, &baselines));
    Ok(())
}

/// `--pareto A,B`: two distinct metrics of the cache.
fn parse_pareto(text: &str) -> Result<Vec<&'static str>, Reported> {
    let names = text
        .split(',')
        .map(|name| metric_by_name(name).map(|m| m.name()).map_err(metric_failure))
        .collect::<Result<Vec<_>, _>>()?;
    match names.as_slice() {
        [a, b] if a != b && !names.contains(&"robust") => Ok(names),
        _ => Err(fail(format!(
            "--pareto takes two different metrics, as `loc,complexity` (not `robust`); got `{text}`"
        ))),
    }
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

//! The search loop: split the images, enumerate candidates, evaluate each on the metric
//! (train and holdout in one pass), checkpoint every result, rank on train.

use super::batch::{self, Timings, TrainHoldout};
use super::checkpoint::{self, Key, Start};
use super::enumerate::{Enumerator, PruneStats};
use super::pareto::front;
use super::probe_set::probes;
use super::scorer::{score_maps, MapScorer, ScoreError};
use super::simplify::simplified;
use super::space::Space;
use super::term::{source, tensors_used, Term, TermId, SAFE_DIV_EPS};
use super::vet::{Dropped, Vetting};
use crate::evaluate::{fresh, values, Evaluation, MetricData};
use crate::metrics::{Better, Metric};
use camc_compiler::axes::AxisSet;
use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use camc_runtime::cache::{Binding, Cache};
use camc_runtime::exec::{Executor, Outputs};
use camc_runtime::run::Run;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Makes an executor for a kernel on the dataset's sizes with these outputs (the CLI picks the
/// backend).
/// Candidates evaluated together by the batched evaluation (and between two checkpoint
/// flushes): enough to share their sub-terms, few enough that each image's table of sub-terms
/// stays small.
const CHUNK_CANDIDATES: usize = 256;

pub type ExecutorFactory<'f> = &'f dyn Fn(&Kernel, Dims, Outputs) -> Result<Box<dyn Executor>, String>;

/// One evaluated program: the unit of checkpoints and of the report.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Scored {
    /// The WEIGHTS expression (`relu(sum[k](WEIGHTS * A))`).
    pub weights: String,
    /// `weights` simplified for reading ([`super::simplify`]): what the rank files and the
    /// summary print. Empty in checkpoints written before it existed.
    #[serde(default)]
    pub simplified: String,
    pub size: u32,
    /// Parameters for the cache tensors it reads besides `A`, e.g. `G: [k,h,w]`.
    pub params: Vec<String>,
    /// The class-dependent tensors it reads (docs/search.md); none: the same map for every
    /// class.
    #[serde(default)]
    pub class_reads: Vec<String>,
    pub train: Option<f64>,
    pub holdout: Option<f64>,
    /// With `--pareto A,B`: each metric's value on train and holdout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pareto: Vec<TrainHoldout>,
}

impl Scored {
    /// The whole `.cam` definition, named `name`.
    pub fn program(&self, name: &str) -> String {
        let mut params = vec!["A: [k,h,w]".to_string()];
        params.extend(self.params.iter().cloned());
        format!("cam {name}({}) = {}\n", params.join(", "), self.map_expression())
    }

    /// `relu(sum[k](WEIGHTS * A))`, with the simplified weights where there are.
    pub fn map_expression(&self) -> String {
        let weights = match self.simplified.as_str() {
            "" => self.weights.as_str(),
            simplified => simplified,
        };
        // `+` and `-` bind less tightly than the `* A` that follows.
        if has_top_level_sum(weights) {
            format!("relu(sum[k](({weights}) * A))")
        } else {
            format!("relu(sum[k]({weights} * A))")
        }
    }
}

/// Whether `.cam` source has a `+` or a binary `-` outside every parenthesis.
fn has_top_level_sum(source: &str) -> bool {
    let mut depth = 0i32;
    let mut previous = '(';
    for c in source.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            // A binary `-` is written with spaces around it; a negation is not.
            '+' | '-' if depth == 0 && (c == '+' || previous == ' ') => return true,
            _ => {}
        }
        previous = c;
    }
    false
}

/// The search's inputs.
pub struct Search<'a> {
    pub cache: &'a Cache,
    pub space: Space,
    /// The objective: one metric (ranked by its primary value, e.g. `loc`'s mean IoU, in its
    /// own direction), or several with weights, ranked by `Σ weight · ±value` (higher better;
    /// a lower-is-better metric counts negatively). Unused (may be empty) with a `scorer`.
    pub objective: Vec<(&'static str, f64)>,
    /// The objective as the user wrote it (`--metric`), recorded in the checkpoint. With a
    /// `scorer`, it must name what the scorer computes (its model, metric and images), since
    /// `--resume` trusts results recorded under the same text.
    pub metric: String,
    /// The direction of the ranking: the metric's own, `Higher` for a weighted sum, the
    /// scorer's with a scorer.
    pub better: Better,
    pub budget: usize,
    pub holdout: f64,
    pub seed: u64,
    pub out: PathBuf,
    pub batch: usize,
    /// Maps a metric compares against (`robust`-style agreement), image-major.
    pub reference: Option<&'a [f32]>,
    /// What the metrics read from the cache; with a `scorer`, only `data.size` is used.
    pub data: &'a MetricData,
    /// Scores the post-processed maps instead of `objective` (a model-based metric computed
    /// outside camc, e.g. by Python); `batch` images per call.
    pub scorer: Option<&'a dyn MapScorer>,
    /// Metrics of the Pareto front (`--pareto A,B`), each candidate scored on them besides
    /// the objective; empty: no front. Needs the batched evaluation.
    pub pareto: Vec<&'static str>,
    /// How many top ranks are vetted ([`super::vet`]) and written as rank files.
    pub keep: usize,
    /// Evaluate candidates in batches ([`super::batch`]) where the objective allows; `false`:
    /// compile and run each candidate on its own (`--evaluation single`).
    pub batched: bool,
}

/// What a search found.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub ranked: Vec<Scored>,
    pub pruning: PruneStats,
    pub evaluated: usize,
    pub resumed: usize,
    /// With `--pareto`: the candidates no other beats on both metrics (on train), best first
    /// on the first metric.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pareto_front: Vec<Scored>,
    /// Top candidates left out of the ranking (duplicate maps, guard-dependent), best first.
    pub dropped: Vec<Dropped>,
    pub seconds: f64,
    /// Where `evaluation_seconds` went: compiling, computing maps, the metric (in the batched
    /// evaluation, thread seconds: with two threads they add up to about twice the wall time).
    pub timings: Timings,
    /// Of `enumeration_seconds`: comparing candidates' maps on the probe ("same map" pruning).
    /// The rest is building terms, evaluating them on the probe and the equivalence pruning,
    /// which are one step.
    pub pruning_seconds: f64,
    /// Seconds spent vetting the top ranks (maps recomputed for duplicates and guards).
    pub vetting_seconds: f64,
    /// Seconds spent building the probe sets and enumerating (pruning included).
    pub enumeration_seconds: f64,
    /// Seconds spent evaluating candidates not taken from the checkpoint: compiling each and
    /// running it over the cache with its metric.
    pub evaluation_seconds: f64,
    pub train_images: usize,
    pub holdout_images: usize,
}

/// Deterministic shuffle of `0..n` (splitmix64 + Fisher–Yates): the first `(1-holdout)·n`
/// images train, the rest are held out.
pub fn split(n: usize, holdout: f64, seed: u64) -> Vec<bool> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let held = ((n as f64) * holdout).round() as usize;
    let mut is_train = vec![true; n];
    for &i in &order[n - held.min(n)..] {
        is_train[i] = false;
    }
    is_train
}

impl Search<'_> {
    /// Runs the search; `progress(done, total, best)` after each candidate.
    pub fn run(
        &self,
        factory: ExecutorFactory,
        start_from: Start,
        mut progress: impl FnMut(usize, usize, Option<&Scored>),
    ) -> Result<Outcome, String> {
        let start = Instant::now();
        let batched = self.batched && batch::supported(self);
        if !self.pareto.is_empty() && !batched {
            return Err(format!(
                "--pareto {} needs the batched evaluation: metrics computed from the maps and boxes (not ad_feat, ic_feat, ag_feat), without --evaluation single",
                self.pareto.join(",")
            ));
        }
        let n = self.cache.images().map_err(|e| e.to_string())?;
        let is_train = split(n, self.holdout, self.seed);
        let probe_images: Vec<usize> = (0..n)
            .filter(|&i| is_train[i])
            .take(self.space.probe_images)
            .collect();
        if probe_images.is_empty() {
            return Err("no training images: lower --holdout or use a larger cache".into());
        }
        let a = self
            .space
            .terminals
            .iter()
            .position(|t| t == "A")
            .ok_or("the search space's terminals must include `A`")?;
        let (small, full) = probes(
            self.cache,
            &self.space.terminals,
            &probe_images,
            self.space.probe_channels,
        )
        .map_err(|e| e.to_string())?;
        let mut enumerator = Enumerator::new(self.space.clone(), &small, &full, a);
        let eligible =
            |terms: &[Term], id: TermId| !self.space.require_class || !self.class_reads(terms, id).is_empty();
        for size in 1..=self.space.max_size {
            enumerator.grow(size);
            let kept = enumerator
                .candidates
                .iter()
                .filter(|&&id| eligible(&enumerator.terms, id))
                .count();
            if kept >= self.budget {
                break;
            }
        }
        let enumeration_seconds = start.elapsed().as_secs_f64();
        let mut evaluation_seconds = 0.0;
        std::fs::create_dir_all(&self.out)
            .map_err(|e| format!("cannot create `{}`: {e}", self.out.display()))?;
        let (done, mut log) = checkpoint::open(&self.out, &self.key()?, start_from)?;
        let chosen: Vec<TermId> = enumerator
            .candidates
            .iter()
            .copied()
            .filter(|&id| eligible(&enumerator.terms, id))
            .take(self.budget)
            .collect();
        let types: Vec<_> = small.terminals.iter().map(|(ty, _)| *ty).collect();
        // Each chosen candidate's printed weights: the checkpoint's key, and how vetting finds
        // a ranked program's term.
        let weights: Vec<String> = chosen
            .iter()
            .map(|&id| source(&enumerator.terms, id, &self.space.terminals))
            .collect();
        let mut scored: Vec<Option<Scored>> = weights.iter().map(|w| done.get(w).cloned()).collect();
        let ids: HashMap<String, TermId> = weights.into_iter().zip(chosen.iter().copied()).collect();
        let resumed = scored.iter().flatten().count();
        let pending: Vec<usize> = (0..chosen.len()).filter(|&i| scored[i].is_none()).collect();
        let mut best: Option<Scored> = None;
        for previous in scored.iter().flatten() {
            self.keep_better(&mut best, previous);
        }
        let chunk_size = if self.batched && batch::supported(self) {
            CHUNK_CANDIDATES
        } else {
            1
        };
        let mut finished = resumed;
        let mut timings = Timings::default();
        for positions in pending.chunks(chunk_size) {
            let ids: Vec<TermId> = positions.iter().map(|&i| chosen[i]).collect();
            let began = Instant::now();
            let (results, seconds) =
                self.evaluate_all(&enumerator.terms, &ids, &types, &is_train, factory)?;
            timings += seconds;
            evaluation_seconds += began.elapsed().as_secs_f64();
            for (&position, result) in positions.iter().zip(results) {
                let line = serde_json::to_string(&result).map_err(|e| e.to_string())?;
                writeln!(log, "{line}").map_err(|e| e.to_string())?;
                self.keep_better(&mut best, &result);
                scored[position] = Some(result);
            }
            log.flush().map_err(|e| e.to_string())?;
            finished += positions.len();
            progress(finished, chosen.len(), best.as_ref());
        }
        let scored: Vec<Scored> = scored
            .into_iter()
            .flatten()
            .map(|s| Scored {
                simplified: simplified(&enumerator.terms, ids[&s.weights], &self.space.terminals),
                ..s
            })
            .collect();
        let began = Instant::now();
        let vetting = Vetting {
            search: self,
            terms: &enumerator.terms,
            ids,
            types: &types,
            is_train: &is_train,
        };
        let pareto_front = front(&scored, &self.pareto_directions());
        let (ranked, dropped) = vetting.vet(self.rank(scored), self.keep)?;
        let vetting_seconds = began.elapsed().as_secs_f64();
        let holdout_images = is_train.iter().filter(|t| !**t).count();
        Ok(Outcome {
            ranked,
            dropped,
            pareto_front,
            vetting_seconds,
            timings,
            pruning_seconds: enumerator.same_map_seconds,
            pruning: enumerator.stats.clone(),
            evaluated: chosen.len() - resumed,
            resumed,
            seconds: start.elapsed().as_secs_f64(),
            enumeration_seconds,
            evaluation_seconds,
            train_images: n - holdout_images,
            holdout_images,
        })
    }

    /// The Pareto metrics' directions.
    pub fn pareto_directions(&self) -> Vec<Better> {
        crate::evaluate::fresh(&self.pareto)
            .iter()
            .map(|m| m.better())
            .collect()
    }

    /// The index of terminal `A` among the space's terminals.
    pub(crate) fn a_terminal(&self) -> usize {
        self.space.terminals.iter().position(|t| t == "A").unwrap_or(0)
    }

    /// `A`'s `[h,w]`: the shape of a raw map.
    pub(crate) fn cache_spatial_shape(&self) -> Vec<usize> {
        self.cache.shards[0]
            .tensors
            .get("A")
            .map(|t| t.shape[2..].to_vec())
            .unwrap_or_default()
    }

    /// The class-dependent terminals a term reads, by name.
    fn class_reads(&self, terms: &[Term], id: TermId) -> Vec<String> {
        let mut used = Vec::new();
        tensors_used(terms, id, &mut used);
        used.iter()
            .filter(|&&i| self.space.class_dependent[i as usize])
            .map(|&i| self.space.terminals[i as usize].clone())
            .collect()
    }

    /// What this search's results depend on, recorded in its checkpoint.
    fn key(&self) -> Result<Key, String> {
        let shards: Vec<&Path> = self.cache.shards.iter().map(|s| s.path.as_path()).collect();
        Ok(Key {
            camc_checkpoint: Key::VERSION,
            cache: Key::stamps(&shards)?,
            metric: match self.pareto.as_slice() {
                [] => self.metric.clone(),
                front => format!("{} --pareto {}", self.metric, front.join(",")),
            },
            seed: self.seed,
            holdout: self.holdout,
            space: format!("{:?}", self.space),
        })
    }

    /// Best first on train (ties: smaller, then earlier in enumeration order); programs
    /// without a value last.
    pub fn rank(&self, mut scored: Vec<Scored>) -> Vec<Scored> {
        // A stable sort keeps enumeration order among equals.
        scored.sort_by(|a, b| {
            self.rank_key(a)
                .total_cmp(&self.rank_key(b))
                .then(a.size.cmp(&b.size))
        });
        scored
    }

    /// `best` becomes `candidate` if it ranks before it (enumeration order breaks ties: the
    /// earlier one stays).
    fn keep_better(&self, best: &mut Option<Scored>, candidate: &Scored) {
        let before = |a: &Scored, b: &Scored| {
            self.rank_key(a)
                .total_cmp(&self.rank_key(b))
                .then(a.size.cmp(&b.size))
                .is_lt()
        };
        if best.as_ref().is_none_or(|b| before(candidate, b)) {
            *best = Some(candidate.clone());
        }
    }

    /// The ranking's key: smaller ranks first.
    fn rank_key(&self, s: &Scored) -> f64 {
        match (s.train, self.better) {
            (Some(v), Better::Higher) => -v,
            (Some(v), Better::Lower) => v,
            (None, _) => f64::INFINITY,
        }
    }

    /// Scores candidates `ids`: in one batch where the search allows it, else one by one.
    pub fn evaluate_all(
        &self,
        terms: &[Term],
        ids: &[TermId],
        types: &[AxisSet],
        is_train: &[bool],
        factory: ExecutorFactory,
    ) -> Result<(Vec<Scored>, Timings), String> {
        if !(self.batched && batch::supported(self)) {
            let mut seconds = Timings::default();
            let scored = ids
                .iter()
                .map(|&id| self.evaluate(terms, id, types, is_train, factory, &mut seconds))
                .collect::<Result<_, _>>()?;
            return Ok((scored, seconds));
        }
        let chunk = batch::Chunk {
            search: self,
            terms,
            ids,
            types,
            guard: SAFE_DIV_EPS,
        };
        let (values, seconds) = chunk.scores(is_train)?;
        let scored = ids
            .iter()
            .zip(values)
            .map(|(&id, scores)| Scored {
                train: scores.objective.0,
                holdout: scores.objective.1,
                pareto: scores.pareto,
                ..self.unscored(terms, id, types)
            })
            .collect();
        Ok((scored, seconds))
    }

    /// A candidate's description, without its values.
    fn unscored(&self, terms: &[Term], id: TermId, types: &[AxisSet]) -> Scored {
        let mut used = Vec::new();
        tensors_used(terms, id, &mut used);
        let params: Vec<String> = used
            .iter()
            .map(|&i| (&self.space.terminals[i as usize], types[i as usize]))
            .filter(|(name, _)| name.as_str() != "A")
            .map(|(name, ty)| format!("{name}: {ty}"))
            .collect();
        Scored {
            weights: source(terms, id, &self.space.terminals),
            simplified: String::new(),
            size: terms[id as usize].size,
            params,
            class_reads: self.class_reads(terms, id),
            train: None,
            holdout: None,
            pareto: Vec::new(),
        }
    }

    /// Compiles one candidate and scores it with the backend's executor.
    fn evaluate(
        &self,
        terms: &[Term],
        id: TermId,
        types: &[AxisSet],
        is_train: &[bool],
        factory: ExecutorFactory,
        seconds: &mut Timings,
    ) -> Result<Scored, String> {
        let mut result = self.unscored(terms, id, types);
        let began = Instant::now();
        let kernel = self.compile("candidate", &result.program("candidate"))?;
        seconds.compile += began.elapsed().as_secs_f64();
        let began = Instant::now();
        let (train, holdout) = self.score_kernel(&kernel, is_train, factory)?;
        seconds.evaluate += began.elapsed().as_secs_f64();
        result.train = train;
        result.holdout = holdout;
        Ok(result)
    }

    /// The metric's primary value on train and on holdout for a `.cam` source's `cam` `name`.
    pub fn score_program(
        &self,
        text: &str,
        name: &str,
        is_train: &[bool],
        factory: ExecutorFactory,
    ) -> Result<(Option<f64>, Option<f64>), String> {
        self.score_kernel(&self.compile(name, text)?, is_train, factory)
    }

    /// The kernel of a `.cam` source's `cam` `name`.
    fn compile(&self, name: &str, text: &str) -> Result<Kernel, String> {
        let checked = camc_compiler::check_source(name, text);
        let program = checked
            .program
            .as_ref()
            .ok_or_else(|| format!("generated program does not check:\n{}", checked.render(false)))?;
        let root = program.exported(name).ok_or("generated program lost its cam")?;
        camc_compiler::compile_kernel(program, root, &HashMap::new(), Level::Exact).map_err(|e| e.to_string())
    }

    /// The objective's value (or the scorer's) on train and on holdout for a kernel.
    pub fn score_kernel(
        &self,
        kernel: &Kernel,
        is_train: &[bool],
        factory: ExecutorFactory,
    ) -> Result<(Option<f64>, Option<f64>), String> {
        self.try_score_kernel(kernel, is_train, factory)
            .map_err(String::from)
    }

    /// [`Search::score_kernel`], telling the scorer's failures from the program's.
    pub fn try_score_kernel(
        &self,
        kernel: &Kernel,
        is_train: &[bool],
        factory: ExecutorFactory,
    ) -> Result<(Option<f64>, Option<f64>), ScoreError> {
        let program = ScoreError::Program;
        let binding = Binding::new(self.cache, kernel).map_err(|e| program(e.to_string()))?;
        let Some(scorer) = self.scorer else {
            return self
                .score_on_metrics(kernel, &binding, is_train, factory)
                .map_err(program);
        };
        let size = self.data.size.clone();
        let map_len = size.iter().product();
        let mut executor = factory(kernel, binding.dims, Outputs::processed(size)).map_err(program)?;
        let job = Run {
            binding: &binding,
            batch: self.batch,
            strict: false,
        };
        score_maps(scorer, &job, executor.as_mut(), map_len, is_train)
    }

    /// The objective's value on train and on holdout, from the cache metrics.
    fn score_on_metrics(
        &self,
        kernel: &Kernel,
        binding: &Binding,
        is_train: &[bool],
        factory: ExecutorFactory,
    ) -> Result<(Option<f64>, Option<f64>), String> {
        let evaluation = Evaluation {
            kernel,
            binding,
            cache: self.cache,
            data: self.data,
            batch: self.batch,
            perturbed: self.reference,
        };
        let names: Vec<&'static str> = self.objective.iter().map(|(n, _)| *n).collect();
        let mut groups: Vec<Vec<Box<dyn Metric>>> = vec![fresh(&names), fresh(&names)];
        let mut executor = factory(kernel, binding.dims, evaluation.outputs(&groups))?;
        evaluation
            .score(
                executor.as_mut(),
                &mut groups,
                &|i| {
                    Some(if is_train.get(i).copied().unwrap_or(true) {
                        0
                    } else {
                        1
                    })
                },
                |_, _, _| Ok(()),
                |_| {},
            )
            .map_err(|e| e.to_string())?;
        Ok((self.combine(&groups[0]), self.combine(&groups[1])))
    }

    /// The objective's value from one group of accumulators (one per objective metric).
    pub(crate) fn combine(&self, metrics: &[Box<dyn Metric>]) -> Option<f64> {
        if let ([(_, _)], [metric]) = (&self.objective[..], metrics) {
            return values(std::slice::from_ref(metric)).first().and_then(|v| v.value);
        }
        let mut total = 0.0;
        for ((_, weight), metric) in self.objective.iter().zip(metrics) {
            let value = metric.finish().first()?.value?;
            total += match metric.better() {
                Better::Higher => weight * value,
                Better::Lower => -weight * value,
            };
        }
        Some(total)
    }
}

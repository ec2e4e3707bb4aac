//! Batched evaluation (docs/search.md): the candidates of a chunk are evaluated together, image
//! by image. Each image's tensors are read once per chunk, every sub-term the chunk's candidates
//! share is computed once on the image (memoised on the term DAG), and each candidate's map is
//! post-processed and scored by the metrics in the same pass; the scores go straight into the
//! candidate's accumulators, in image order, so no heatmap of the dataset is kept and the
//! accumulation is the single evaluation's.

use super::driver::Search;
use super::probe::Probe;
use super::probe_set::block;
use super::term::{Term, TermId, TermOp};
use crate::evaluate::{fresh, MetricData};
use crate::metrics::{ImageInput, Map, Metric, Need};
use camc_compiler::axes::AxisSet;
use camc_runtime::postprocess::{sanitize, Scaler};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

/// Images read from the cache at a time.
const BLOCK_IMAGES: usize = 64;

/// A candidate's values of the objective's metrics on one image (`None`: the image is skipped).
type ImageScores = Vec<Option<f64>>;

/// A candidate's objective value on train and on holdout.
pub type TrainHoldout = (Option<f64>, Option<f64>);

/// Whether the search's objective can be evaluated in batches: metrics computed from the
/// post-processed map, the boxes and the reference maps (not those that read `A` through the
/// head, nor a scorer outside camc).
pub fn supported(search: &Search) -> bool {
    search.scorer.is_none()
        && fresh(&objective_names(search)).iter().all(|m| {
            m.needs()
                .iter()
                .all(|n| matches!(n, Need::Boxes | Need::Perturbed))
        })
}

/// The metrics every candidate is scored on: the objective's, then the Pareto front's.
fn objective_names(search: &Search) -> Vec<&'static str> {
    search
        .objective
        .iter()
        .map(|(name, _)| *name)
        .chain(search.pareto.iter().copied())
        .collect()
}

/// A candidate's scores: the objective's value, and each Pareto metric's primary value, on
/// train and on holdout.
#[derive(Clone, Debug, PartialEq)]
pub struct CandidateScores {
    pub objective: TrainHoldout,
    pub pareto: Vec<TrainHoldout>,
}

/// The terms `ids` read, themselves included, in ascending id order (operands before the
/// terms that use them, since a term is numbered after its operands).
fn needed(terms: &[Term], ids: &[TermId]) -> Vec<TermId> {
    let mut marked = vec![false; terms.len()];
    let mut stack: Vec<TermId> = ids.to_vec();
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut marked[id as usize], true) {
            continue;
        }
        match terms[id as usize].op {
            TermOp::Tensor(_) | TermOp::Const(_) => {}
            TermOp::Unary(_, x) | TermOp::Reduce(_, x) => stack.push(x),
            TermOp::Binary(_, a, b) | TermOp::SafeDiv(a, b) => stack.extend([a, b]),
        }
    }
    (0..terms.len() as TermId)
        .filter(|&i| marked[i as usize])
        .collect()
}

/// A chunk of candidates over the cache.
pub struct Chunk<'c> {
    pub search: &'c Search<'c>,
    pub terms: &'c [Term],
    pub ids: &'c [TermId],
    /// The terminals' types, in the space's order.
    pub types: &'c [AxisSet],
    /// The constant of `/+` (the space's, or a multiple when checking guard sensitivity).
    pub guard: f32,
}

/// What one image gives back for the chunk: per candidate, its scores or its map.
enum ImageOutput {
    Scores(Vec<ImageScores>),
    Maps(Vec<f32>),
}

/// One image's output, and the thread's seconds spent computing maps and scoring them.
struct ImageResult {
    output: ImageOutput,
    seconds: Timings,
}

/// Where evaluation time goes (seconds; in the batched evaluation, summed over threads).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    /// Compiling candidates and creating their executors (single evaluation); collecting the
    /// chunk's sub-terms (batched).
    pub compile: f64,
    /// Computing maps: sub-terms, `sum[k]`, post-processing (single evaluation: running the
    /// executor, the metric included).
    pub evaluate: f64,
    /// The metrics on the post-processed maps (batched evaluation only).
    pub metric: f64,
}

impl std::ops::AddAssign for Timings {
    fn add_assign(&mut self, other: Timings) {
        self.compile += other.compile;
        self.evaluate += other.evaluate;
        self.metric += other.metric;
    }
}

impl Chunk<'_> {
    /// The objective's value on train and on holdout for each candidate.
    pub fn scores(&self, is_train: &[bool]) -> Result<(Vec<CandidateScores>, Timings), String> {
        let names = objective_names(self.search);
        let mut groups: Vec<[Vec<Box<dyn Metric>>; 2]> =
            self.ids.iter().map(|_| [fresh(&names), fresh(&names)]).collect();
        let n = self.search.cache.images().map_err(|e| e.to_string())?;
        let seconds = self.over(0..n, true, |image, output| {
            let ImageOutput::Scores(scores) = output else {
                return;
            };
            let group = usize::from(!is_train.get(image).copied().unwrap_or(true));
            for (accumulators, values) in groups.iter_mut().zip(scores) {
                for (metric, value) in accumulators[group].iter_mut().zip(values) {
                    metric.add_score(value);
                }
            }
        })?;
        let scores = groups
            .iter()
            .map(|[train, holdout]| {
                let objective = self.search.objective.len();
                let primary = |metric: &dyn Metric| metric.finish().first().and_then(|v| v.value);
                CandidateScores {
                    objective: (
                        self.search.combine(&train[..objective]),
                        self.search.combine(&holdout[..objective]),
                    ),
                    pareto: train[objective..]
                        .iter()
                        .zip(&holdout[objective..])
                        .map(|(t, h)| (primary(t.as_ref()), primary(h.as_ref())))
                        .collect(),
                }
            })
            .collect();
        Ok((scores, seconds))
    }

    /// Each candidate's post-processed maps on the images `range`, image after image (for
    /// comparing a few candidates' maps).
    pub fn maps(&self, range: Range<usize>) -> Result<Vec<Vec<f32>>, String> {
        let map_len: usize = self.search.data.size.iter().product();
        let mut maps = vec![Vec::with_capacity(range.len() * map_len); self.ids.len()];
        self.over(range, false, |_, output| {
            if let ImageOutput::Maps(processed) = output {
                for (all, map) in maps.iter_mut().zip(processed.chunks(map_len)) {
                    all.extend_from_slice(map);
                }
            }
        })?;
        Ok(maps)
    }

    /// Evaluates the chunk on the images `range`, block by block (each block's images in
    /// parallel), and hands each image's output to `each` in image order.
    fn over(
        &self,
        range: Range<usize>,
        score: bool,
        mut each: impl FnMut(usize, ImageOutput),
    ) -> Result<Timings, String> {
        let began = Instant::now();
        let needed = needed(self.terms, self.ids);
        let slots: HashMap<TermId, usize> = needed.iter().enumerate().map(|(slot, &id)| (id, slot)).collect();
        let plan = Plan::new(self.terms, self.ids, &needed, &slots);
        let work = ImageWork {
            terms: self.terms,
            ids: self.ids,
            a: self.search.a_terminal(),
            scaler: Scaler::new(&self.search.cache_spatial_shape(), &self.search.data.size),
            data: self.search.data,
            reference: self.search.reference,
            metrics: fresh(&objective_names(self.search)),
            needed: &needed,
            slots: &slots,
            plan: &plan,
        };
        let terminals = &self.search.space.terminals;
        let mut seconds = Timings {
            compile: began.elapsed().as_secs_f64(),
            ..Timings::default()
        };
        let mut first = range.start;
        while first < range.end {
            let images = first..(first + BLOCK_IMAGES).min(range.end);
            let mut probe =
                block(self.search.cache, terminals, self.types, images.clone()).map_err(|e| e.to_string())?;
            probe.guard = self.guard;
            let results: Vec<Result<ImageResult, String>> = images
                .clone()
                .into_par_iter()
                .map(|image| work.image(&probe.image(image - first), image, score))
                .collect();
            for (image, result) in images.clone().zip(results) {
                let result = result?;
                seconds += result.seconds;
                each(image, result.output);
            }
            first = images.end;
        }
        Ok(seconds)
    }
}

/// What evaluating one image needs (shared by the threads).
struct ImageWork<'w> {
    terms: &'w [Term],
    ids: &'w [TermId],
    /// The index of terminal `A`.
    a: usize,
    /// Post-processes a raw map to the metrics' size.
    scaler: Scaler,
    data: &'w MetricData,
    reference: Option<&'w [f32]>,
    /// The objective's metrics (only their per-image `score` is used).
    metrics: Vec<Box<dyn Metric>>,
    needed: &'w [TermId],
    /// Each needed term's place in `needed`.
    slots: &'w HashMap<TermId, usize>,
    plan: &'w Plan,
}

/// When each needed term's values can be let go: the evaluation keeps only the live ones, so
/// that an image's working set stays in cache however many terms the chunk reads.
struct Plan {
    /// Per needed term (by place): the candidate it is, if any (its place in `ids`).
    candidate: Vec<Option<usize>>,
    /// Per needed term: the terms (by place) whose last reader it is, themselves included.
    release: Vec<Vec<usize>>,
}

impl Plan {
    fn new(terms: &[Term], ids: &[TermId], needed: &[TermId], slots: &HashMap<TermId, usize>) -> Plan {
        let mut candidate = vec![None; needed.len()];
        for (index, id) in ids.iter().enumerate() {
            candidate[slots[id]] = Some(index);
        }
        // A term is last read by the latest term that has it as an operand, or by itself (a
        // candidate's map is computed as soon as its term is).
        let mut last: Vec<usize> = (0..needed.len()).collect();
        for (place, &id) in needed.iter().enumerate() {
            let operands = match terms[id as usize].op {
                TermOp::Tensor(_) | TermOp::Const(_) => vec![],
                TermOp::Unary(_, x) | TermOp::Reduce(_, x) => vec![x],
                TermOp::Binary(_, a, b) | TermOp::SafeDiv(a, b) => vec![a, b],
            };
            for operand in operands {
                last[slots[&operand]] = place;
            }
        }
        let mut release = vec![Vec::new(); needed.len()];
        for (place, &at) in last.iter().enumerate() {
            release[at].push(place);
        }
        Plan { candidate, release }
    }
}

impl ImageWork<'_> {
    /// Every candidate's map on one image (`one`, image `image` of the cache), post-processed
    /// as the executors do (non-finite values set to 0, min-max, resize, min-max), then scored
    /// at once (`score`) or kept.
    fn image(&self, one: &Probe, image: usize, score: bool) -> Result<ImageResult, String> {
        let began = Instant::now();
        let slots = self.slots;
        let map_len: usize = self.data.size.iter().product();
        let mut processed = vec![0.0f32; map_len];
        let mut scratch = Vec::new();
        let mut scores = vec![Vec::new(); if score { self.ids.len() } else { 0 }];
        let mut maps = vec![0.0f32; if score { 0 } else { self.ids.len() * map_len }];
        let mut metric = 0.0;
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); self.needed.len()];
        let mut pool: Vec<Vec<f32>> = Vec::new();
        for (place, &id) in self.needed.iter().enumerate() {
            let mut out = pool.pop().unwrap_or_default();
            let operand = |child: TermId| Cow::Borrowed(values[slots[&child]].as_slice());
            one.eval_into(&self.terms[id as usize], self.terms, &operand, &mut out);
            values[place] = out;
            if let Some(index) = self.plan.candidate[place] {
                let mut raw = one.map(self.terms[id as usize].ty, &values[place], self.a);
                sanitize(&mut raw);
                self.scaler.scale_into(&raw, &mut processed, &mut scratch);
                if score {
                    let scoring = Instant::now();
                    scores[index] = self.score(image, &processed)?;
                    metric += scoring.elapsed().as_secs_f64();
                } else {
                    maps[index * map_len..][..map_len].copy_from_slice(&processed);
                }
            }
            for &done in &self.plan.release[place] {
                pool.push(std::mem::take(&mut values[done]));
            }
        }
        let seconds = Timings {
            compile: 0.0,
            evaluate: began.elapsed().as_secs_f64() - metric,
            metric,
        };
        let output = if score {
            ImageOutput::Scores(scores)
        } else {
            ImageOutput::Maps(maps)
        };
        Ok(ImageResult { output, seconds })
    }

    /// The objective's metrics on one post-processed map of image `image`.
    fn score(&self, image: usize, processed: &[f32]) -> Result<ImageScores, String> {
        let data = self.data;
        let (h, w) = (data.size[0], data.size[1]);
        let at = |e: crate::metrics::MetricError| format!("image {image}: {e}");
        let mut input = ImageInput::new(Map::new(processed, h, w).map_err(at)?);
        input.boxes = data
            .boxes
            .as_ref()
            .map(|b| b.get(image).map(Vec::as_slice).unwrap_or(&[]));
        if let Some(reference) = self.reference {
            let other = reference.get(image * h * w..(image + 1) * h * w).unwrap_or(&[]);
            input.perturbed = Some(Map::new(other, h, w).map_err(at)?);
        }
        self.metrics.iter().map(|m| m.score(&input).map_err(at)).collect()
    }
}

//! Scoring a program on a cache: run it (post-processed by its executor), and feed each image's
//! maps to metric accumulators together with what the metrics need from the cache (boxes, the head, `A`,
//! the perturbed maps). Shared by `camc eval`, `camc run --png` and `camc search`.

pub use crate::metric_data::MetricData;
use crate::metrics::{
    confidences, metric_by_name, FeatureInput, Head, ImageInput, Map, Metric, MetricError, MetricValue, Need,
};
use camc_compiler::ir::Kernel;
use camc_runtime::cache::{Binding, Cache, CacheError};
use camc_runtime::exec::{ExecError, Executor, Outputs};
use camc_runtime::postprocess::minmax;
use camc_runtime::run::{Run, RunError, RunStats};
use rayon::prelude::*;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{0}")]
    Metric(#[from] MetricError),
    #[error("image {image}: {error}")]
    Image { image: usize, error: MetricError },
}

impl EvalError {
    /// The program source the error is about, where there is one.
    pub fn span(&self) -> Option<camc_compiler::span::Span> {
        match self {
            EvalError::Run(error) => error.span(),
            EvalError::Cache(error) => error.span(),
            _ => None,
        }
    }
}

/// Fresh accumulators for metric names.
pub fn fresh(names: &[&'static str]) -> Vec<Box<dyn Metric>> {
    names
        .iter()
        .map(|n| metric_by_name(n).expect("names come from existing metrics"))
        .collect()
}

/// One program's evaluation over a cache.
pub struct Evaluation<'a> {
    pub kernel: &'a Kernel,
    pub binding: &'a Binding<'a>,
    pub cache: &'a Cache,
    pub data: &'a MetricData,
    pub batch: usize,
    /// Maps of the perturbed cache, image-major at the map size (`robust`).
    pub perturbed: Option<&'a [f32]>,
}

/// One image's group of accumulators and a score for each of its metrics.
type GroupScores = (usize, Vec<Option<f64>>);

/// Per image: which group of accumulators it feeds (e.g. train 0 / holdout 1), or `None`.
pub type Grouping<'g> = &'g (dyn Fn(usize) -> Option<usize> + Sync);

impl Evaluation<'_> {
    /// The outputs an executor must compute for `groups`: the map post-processed to the
    /// metrics' size, and the raw map too where a metric reads the activations (the
    /// feature-level metrics mask `A` with the min-maxed raw map).
    pub fn outputs(&self, groups: &[Vec<Box<dyn Metric>>]) -> Outputs {
        let size = self.data.size.clone();
        if groups
            .iter()
            .flatten()
            .any(|m| m.needs().contains(&Need::Activations))
        {
            Outputs::both(size)
        } else {
            Outputs::processed(size)
        }
    }

    /// Runs the program and feeds every image to `groups[grouping(image)]`; `each(image, map,
    /// scores)` sees every post-processed map (overlays, keeping maps) with the image's score
    /// for each metric of its group (none for an image no group takes). `executor` must have been built
    /// for [`Evaluation::outputs`]. Returns the run's statistics.
    pub fn score(
        &self,
        executor: &mut dyn Executor,
        groups: &mut [Vec<Box<dyn Metric>>],
        grouping: Grouping,
        mut each: impl FnMut(usize, &[f32], &[Option<f64>]) -> Result<(), String>,
        progress: impl FnMut(usize),
    ) -> Result<RunStats, EvalError> {
        let wanted = self.outputs(groups);
        if executor.outputs() != &wanted {
            return Err(EvalError::Run(RunError::Exec(ExecError::Outputs(format!(
                "the executor computes {:?}, the metrics need {wanted:?}",
                executor.outputs()
            )))));
        }
        let map_len: usize = self.data.size.iter().product();
        let job = Run {
            binding: self.binding,
            batch: self.batch,
            strict: false,
        };
        let head = match &self.data.head {
            Some((w, b)) => Some(Head::new(w, b, self.binding.dims.k)?),
            None => None,
        };
        let mut failure: Option<EvalError> = None;
        let stats = job.execute_in_order(
            executor,
            |first, raw, processed| {
                let scored = self.image_scores(groups, grouping, head, first, raw, processed);
                match scored {
                    Ok(scores) => {
                        let maps = processed.chunks(map_len.max(1));
                        for (i, (map, image)) in maps.zip(&scores).enumerate() {
                            let values = image.as_ref().map_or(&[][..], |(_, v)| v.as_slice());
                            each(first + i, map, values)?;
                        }
                        for (group, values) in scores.into_iter().flatten() {
                            for (metric, value) in groups[group].iter_mut().zip(values) {
                                metric.add_score(value);
                            }
                        }
                        Ok(())
                    }
                    Err(error) => {
                        failure = Some(error);
                        Err(String::new())
                    }
                }
            },
            progress,
        );
        match (stats, failure) {
            (_, Some(error)) => Err(error),
            (Ok(stats), None) => Ok(stats),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// The scores of a batch's images (`first` onwards; `raw` and `processed` their maps), each
    /// image on its own thread: per image, its group and a score per metric of the group, or
    /// `None` for an image no group takes. The first error in image order, if any.
    fn image_scores(
        &self,
        groups: &[Vec<Box<dyn Metric>>],
        grouping: Grouping,
        head: Option<Head<'_>>,
        first: usize,
        raw: &[f32],
        processed: &[f32],
    ) -> Result<Vec<Option<GroupScores>>, EvalError> {
        let map_len: usize = self.data.size.iter().product();
        let raw_len = self.binding.dims.len(self.kernel.output_ty());
        let k = self.binding.dims.k;
        let n = processed.len() / map_len.max(1);
        // The feature-level metrics mask `A` with the min-maxed raw map.
        let activations = if raw.is_empty() {
            None
        } else {
            Some(self.activations(first, n)?)
        };
        let scores: Vec<Result<Option<GroupScores>, EvalError>> = (0..n)
            .into_par_iter()
            .map(|i| {
                let image = first + i;
                let Some(group) = grouping(image) else {
                    return Ok(None);
                };
                let saliency = match activations {
                    Some(_) => {
                        let mut saliency = raw[i * raw_len..(i + 1) * raw_len].to_vec();
                        minmax(&mut saliency);
                        saliency
                    }
                    None => Vec::new(),
                };
                let a = activations.as_ref().map(|a| &a[i * k * raw_len..][..k * raw_len]);
                let map = &processed[i * map_len..(i + 1) * map_len];
                let input = self.input(image, map, &saliency, a, head)?;
                let at = |error| EvalError::Image { image, error };
                let values = groups[group]
                    .iter()
                    .map(|m| m.score(&input).map_err(at))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Some((group, values)))
            })
            .collect();
        scores.into_iter().collect()
    }

    fn activations(&self, first: usize, n: usize) -> Result<Vec<f32>, CacheError> {
        let mut out = Vec::new();
        let mut start = 0;
        for shard in &self.cache.shards {
            let count = shard.images()?;
            let lo = first.max(start);
            let hi = (first + n).min(start + count);
            if lo < hi {
                out.extend(shard.read_rows_f32("A", lo - start..hi - start)?);
            }
            start += count;
        }
        Ok(out)
    }

    /// What the metrics read about one image.
    fn input<'i>(
        &'i self,
        image: usize,
        map: &'i [f32],
        saliency: &'i [f32],
        activations: Option<&'i [f32]>,
        head: Option<Head<'i>>,
    ) -> Result<ImageInput<'i>, EvalError> {
        let at = |error| EvalError::Image { image, error };
        let (h, w) = (self.data.size[0], self.data.size[1]);
        let mut input = ImageInput::new(Map::new(map, h, w).map_err(at)?);
        input.boxes = self
            .data
            .boxes
            .as_ref()
            .map(|b| b.get(image).map(Vec::as_slice).unwrap_or(&[]));
        if let (Some(activations), Some(head)) = (activations, head) {
            let target = self
                .data
                .targets
                .as_ref()
                .and_then(|t| t.get(image))
                .copied()
                .unwrap_or(0);
            let feature = FeatureInput {
                activations,
                k: self.binding.dims.k,
                saliency,
                head,
                target,
            };
            input.confidences = Some(confidences(&feature).map_err(at)?);
            input.feature = Some(feature);
        }
        if let Some(perturbed) = self.perturbed {
            let other = perturbed.get(image * h * w..(image + 1) * h * w).unwrap_or(&[]);
            input.perturbed = Some(Map::new(other, h, w).map_err(at)?);
        }
        Ok(input)
    }
}

/// The values of a group of accumulators, all metrics concatenated.
pub fn values(metrics: &[Box<dyn Metric>]) -> Vec<MetricValue> {
    metrics.iter().flat_map(|m| m.finish()).collect()
}

//! Running a compiled program over a whole cache: batch by batch through its executor, each
//! image's maps handed to a sink, and non-finite results counted (or, strictly, refused).

use crate::batch::Batch;
use crate::cache::{Binding, CacheError};
use crate::exec::{ExecError, Executor, Maps, Sink};
use camc_compiler::ir::InputKind;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("image {image}: the result has {count} non-finite value(s) (--strict){culprit}")]
    NonFinite {
        image: usize,
        count: usize,
        culprit: String,
    },
    #[error("{0}")]
    Sink(String),
}

impl RunError {
    /// The program source the error is about, where there is one.
    pub fn span(&self) -> Option<camc_compiler::span::Span> {
        match self {
            RunError::Cache(error) => error.span(),
            _ => None,
        }
    }
}

/// What a run found besides its output.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunStats {
    pub images: usize,
    /// Non-finite values set to 0, over all images.
    pub nonfinite_values: usize,
    /// Images with non-finite values: `(image, count, what the inputs hold)`, the first few.
    pub nonfinite_images: Vec<(usize, usize, String)>,
    pub nonfinite_image_count: usize,
}

/// The processed shape for an output size given as `H,W` (or `D,H,W`): a 3-D result resized
/// with a 2-value size keeps its depth.
pub fn scaled_shape(raw: &[usize], size: &[usize]) -> Option<Vec<usize>> {
    match (raw.len(), size.len()) {
        (a, b) if a == b => Some(size.to_vec()),
        (3, 2) => Some(vec![raw[0], size[0], size[1]]),
        _ => None,
    }
}

/// A compiled program run over every image of a cache, batch by batch.
pub struct Run<'a> {
    pub binding: &'a Binding<'a>,
    /// Images per batch.
    pub batch: usize,
    /// Non-finite values in a result are an error instead of a warning.
    pub strict: bool,
}

impl Run<'_> {
    /// Runs `executor` over the dataset: each image's maps go to `sink(image, maps)`, `image`
    /// counted in the dataset, as soon as they are computed (from any thread, in any order of
    /// images); `progress(n)` is told as each batch of `n` images completes.
    pub fn execute(
        &self,
        executor: &mut dyn Executor,
        sink: &Sink<'_>,
        progress: impl FnMut(usize),
    ) -> Result<RunStats, RunError> {
        self.batches(
            executor,
            |executor, batch, first, counts| {
                let counted = |i: usize, maps: Maps<'_>| {
                    counts[i].store(maps.nonfinite, Ordering::Relaxed);
                    sink(first + i, maps)
                };
                Ok(executor.run(batch, &counted)?)
            },
            progress,
        )
    }

    /// Like [`Run::execute`], each batch's maps gathered in image order
    /// ([`Executor::run_into`]) and handed to `consume(first, raw, processed)`: image-major,
    /// each empty where the executor's [`crate::exec::Outputs`] do not ask for it. For
    /// consumers that read images in order.
    pub fn execute_in_order(
        &self,
        executor: &mut dyn Executor,
        mut consume: impl FnMut(usize, &[f32], &[f32]) -> Result<(), String>,
        progress: impl FnMut(usize),
    ) -> Result<RunStats, RunError> {
        let (raw_len, processed_len) = executor.map_lens();
        let mut raw = Vec::new();
        let mut processed = Vec::new();
        let mut nonfinite = Vec::new();
        self.batches(
            executor,
            |executor, batch, first, counts| {
                raw.resize(batch.n * raw_len, 0.0);
                processed.resize(batch.n * processed_len, 0.0);
                nonfinite.resize(batch.n, 0);
                executor.run_into(batch, &mut raw, &mut processed, &mut nonfinite)?;
                for (count, &found) in counts.iter().zip(&nonfinite) {
                    count.store(found, Ordering::Relaxed);
                }
                consume(first, &raw, &processed).map_err(RunError::Sink)
            },
            progress,
        )
    }

    /// The loop over batches: `run_batch(executor, batch, first image, non-finite counts)` fills
    /// each image's count; a batch's non-finite values are then warned about or, with
    /// `strict`, an error.
    fn batches(
        &self,
        executor: &mut dyn Executor,
        mut run_batch: impl FnMut(&mut dyn Executor, &Batch<'_>, usize, &[AtomicUsize]) -> Result<(), RunError>,
        mut progress: impl FnMut(usize),
    ) -> Result<RunStats, RunError> {
        let mut stats = RunStats::default();
        for (shard, rows) in self.binding.batches(self.batch) {
            let bound = self.binding.load(shard, rows)?;
            let batch = bound.batch();
            let counts: Vec<AtomicUsize> = (0..batch.n).map(|_| AtomicUsize::new(0)).collect();
            run_batch(executor, &batch, bound.first, &counts)?;
            for (i, count) in counts.iter().map(|c| c.load(Ordering::Relaxed)).enumerate() {
                if count == 0 {
                    continue;
                }
                let image = bound.first + i;
                let culprit = describe_inputs(&bound, i, self.binding);
                if self.strict {
                    return Err(RunError::NonFinite {
                        image,
                        count,
                        culprit,
                    });
                }
                stats.nonfinite_values += count;
                stats.nonfinite_image_count += 1;
                if stats.nonfinite_images.len() < 5 {
                    stats.nonfinite_images.push((image, count, culprit));
                }
            }
            stats.images += batch.n;
            progress(batch.n);
        }
        Ok(stats)
    }
}

/// Which inputs of image `i` of a batch hold non-finite values, to explain a bad result.
fn describe_inputs(bound: &crate::cache::BoundBatch<'_>, i: usize, binding: &Binding) -> String {
    let batch = bound.batch();
    let mut found = Vec::new();
    for ((name, data), kind) in binding.names.iter().zip(&batch.inputs).zip(&binding.kinds) {
        let values = data.to_f32();
        let image = match kind {
            InputKind::PerImage => {
                let per_image = data.len() / batch.n.max(1);
                &values[i * per_image..(i + 1) * per_image]
            }
            InputKind::Shared => &values[..],
        };
        let nan = image.iter().filter(|v| v.is_nan()).count();
        let inf = image.iter().filter(|v| v.is_infinite()).count();
        if nan + inf > 0 {
            found.push(format!("`{name}` has {nan} NaN and {inf} infinite value(s)"));
        }
    }
    if found.is_empty() {
        "; the inputs are finite (the program divides by zero or overflows)".into()
    } else {
        format!("; input {}", found.join(", "))
    }
}

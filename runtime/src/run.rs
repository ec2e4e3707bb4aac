//! Running a compiled kernel over a whole cache: batch by batch through an executor, each
//! image's result post-processed and handed to a sink in dataset order.

use crate::cache::{Binding, CacheError};
use crate::exec::{Batch, ExecError, Executor, ImageSink};
use crate::postprocess::Post;
use camc_compiler::axes::Axis;
use camc_compiler::ir::Kernel;
use rayon::prelude::*;

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

/// The shape of one raw result: the output type's axes in canonical order.
pub fn raw_shape(kernel: &Kernel, binding: &Binding) -> Vec<usize> {
    let ty = kernel.output_ty();
    Axis::ALL
        .into_iter()
        .filter(|a| ty.contains(*a))
        .map(|a| binding.dims.size(a))
        .collect()
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

pub struct Run<'a> {
    pub kernel: &'a Kernel,
    pub binding: &'a Binding<'a>,
    pub post: Post,
    pub batch: usize,
    pub strict: bool,
}

impl Run<'_> {
    /// Runs every batch; `sink(first_image, images)` receives processed images in order, and
    /// `progress(n)` is told as each batch of `n` images completes. Where the executor can
    /// post-process itself ([`Executor::run_scaled`]), it does.
    pub fn execute(
        &self,
        executor: &mut dyn Executor,
        mut sink: impl FnMut(usize, &[f32]) -> Result<(), String>,
        progress: impl FnMut(usize),
    ) -> Result<RunStats, RunError> {
        self.batches(
            executor,
            true,
            Destination::Buffer,
            |first, _, processed| sink(first, processed),
            progress,
        )
    }

    /// Like [`Run::execute`], every image's processed result written straight into `out`
    /// (image-major, `images × image size` values), the sink seeing each batch's part of it.
    pub fn execute_into(
        &self,
        executor: &mut dyn Executor,
        out: &mut [f32],
        mut sink: impl FnMut(usize, &[f32]) -> Result<(), String>,
        progress: impl FnMut(usize),
    ) -> Result<RunStats, RunError> {
        let per_image: usize = self
            .post
            .shape(&raw_shape(self.kernel, self.binding))
            .iter()
            .product();
        let expected = self.binding.images * per_image;
        if out.len() != expected {
            return Err(RunError::Sink(format!(
                "the output holds {} values, {expected} expected",
                out.len()
            )));
        }
        self.batches(
            executor,
            true,
            Destination::Slice(out),
            |first, _, processed| sink(first, processed),
            progress,
        )
    }

    /// Like [`Run::execute`], each image's processed result handed to `write(image, map)` as
    /// soon as it is computed, from the thread that computed it, in any order of images
    /// ([`Executor::run_scaled_each`]).
    pub fn execute_each(
        &self,
        executor: &mut dyn Executor,
        write: &ImageSink<'_>,
        progress: impl FnMut(usize),
    ) -> Result<RunStats, RunError> {
        self.batches(
            executor,
            true,
            Destination::Each(write),
            |_, _, _| Ok(()),
            progress,
        )
    }

    /// Like [`Run::execute`], the sink also receiving the raw results (non-finite values
    /// already set to 0): `sink(first_image, raw, processed)`.
    pub fn execute_with_raw(
        &self,
        executor: &mut dyn Executor,
        sink: impl FnMut(usize, &[f32], &[f32]) -> Result<(), String>,
        progress: impl FnMut(usize),
    ) -> Result<RunStats, RunError> {
        self.batches(executor, false, Destination::Buffer, sink, progress)
    }

    /// The loop over batches; with `in_backend`, post-processing is left to the executor where
    /// it can (the sink then receives no raw results). The processed results go to
    /// `destination`, then to the sink batch by batch.
    fn batches(
        &self,
        executor: &mut dyn Executor,
        in_backend: bool,
        mut destination: Destination<'_, '_>,
        mut sink: impl FnMut(usize, &[f32], &[f32]) -> Result<(), String>,
        mut progress: impl FnMut(usize),
    ) -> Result<RunStats, RunError> {
        let raw_shape = raw_shape(self.kernel, self.binding);
        let raw_len: usize = raw_shape.iter().product();
        let out_len: usize = self.post.shape(&raw_shape).iter().product();
        let mut stats = RunStats::default();
        let mut raw = Vec::new();
        let mut buffer = Vec::new();
        let mut bad = Vec::new();
        let each = match &destination {
            Destination::Each(write) => Some(*write),
            _ => None,
        };
        for (shard, rows) in self.binding.batches(self.batch) {
            let bound = self.binding.load(shard, rows)?;
            let batch = bound.batch();
            let first = bound.first;
            bad.clear();
            bad.resize(batch.n, 0);
            let handed_on = match (&self.post, each) {
                (Post::Scale { size }, Some(write)) if in_backend => {
                    raw.clear();
                    executor.run_scaled_each(&batch, size, &mut bad, &|i, map| write(first + i, map))?
                }
                _ => false,
            };
            let processed: &[f32] = if handed_on {
                &[]
            } else {
                let processed: &mut [f32] = match &mut destination {
                    Destination::Slice(all) => &mut all[first * out_len..][..batch.n * out_len],
                    Destination::Buffer | Destination::Each(_) => {
                        buffer.resize(batch.n * out_len, 0.0);
                        &mut buffer
                    }
                };
                self.compute(
                    executor, &batch, in_backend, &raw_shape, raw_len, &mut raw, processed, &mut bad,
                )?;
                if let Some(write) = each {
                    processed
                        .par_chunks(out_len.max(1))
                        .enumerate()
                        .try_for_each(|(i, map)| write(first + i, map))
                        .map_err(RunError::Sink)?;
                }
                processed
            };
            for (i, &count) in bad.iter().enumerate().filter(|(_, &c)| c > 0) {
                let image = first + i;
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
            sink(first, &raw, processed).map_err(RunError::Sink)?;
            stats.images += batch.n;
            progress(batch.n);
        }
        Ok(stats)
    }

    /// One batch's processed maps into `processed`: post-processed by the executor where
    /// `in_backend` and it can, else its raw results (kept in `raw`) post-processed here.
    #[allow(clippy::too_many_arguments)]
    fn compute(
        &self,
        executor: &mut dyn Executor,
        batch: &Batch<'_>,
        in_backend: bool,
        raw_shape: &[usize],
        raw_len: usize,
        raw: &mut Vec<f32>,
        processed: &mut [f32],
        bad: &mut [usize],
    ) -> Result<(), RunError> {
        if let (Post::Scale { size }, true) = (&self.post, in_backend) {
            raw.clear();
            if executor.run_scaled(batch, size, processed, bad)? {
                return Ok(());
            }
        }
        let out_len = processed.len() / batch.n.max(1);
        raw.resize(batch.n * raw_len, 0.0);
        executor.run(batch, raw)?;
        raw.par_chunks_mut(raw_len)
            .zip(processed.par_chunks_mut(out_len))
            .zip(bad.par_iter_mut())
            .for_each(|((raw, out), bad)| *bad = self.post.apply(raw, raw_shape, out));
        Ok(())
    }
}

/// Where [`Run::batches`] puts the processed maps.
enum Destination<'a, 'b> {
    /// A buffer of one batch.
    Buffer,
    /// The batch's part of every image's maps, image-major.
    Slice(&'a mut [f32]),
    /// Each map handed on as computed: `write(image in the dataset, map)`.
    Each(&'a ImageSink<'b>),
}

/// Which inputs of image `i` of a batch hold non-finite values, to explain a bad result.
fn describe_inputs(bound: &crate::cache::BoundBatch<'_>, i: usize, binding: &Binding) -> String {
    let batch = bound.batch();
    let mut found = Vec::new();
    for (name, data) in binding.names.iter().zip(&batch.inputs) {
        let per_image = data.len() / batch.n.max(1);
        let values = data.to_f32();
        let image = &values[i * per_image..(i + 1) * per_image];
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

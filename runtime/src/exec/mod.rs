//! Executors: a compiled program run over a batch of images. Every backend (the interpreter, the
//! Cranelift JIT, CUDA) implements [`Executor`]; `camc run`, `eval` and `search` only see the
//! trait. The [`Outputs`] (raw map, post-processed map or both) are part of what is compiled.

pub mod cpu;
pub mod cuda;
pub mod interp;

use crate::batch::Batch;
use camc_compiler::dims::Dims;
use camc_compiler::ir::{InputKind, Kernel};
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("input `{name}` holds {got} values for a batch of {n}; expected {expected}")]
    InputLength {
        name: String,
        n: usize,
        expected: usize,
        got: usize,
    },
    #[error("the kernel takes {expected} inputs, the batch has {got}")]
    InputCount { expected: usize, got: usize },
    #[error("{backend}: {message}")]
    Backend { backend: &'static str, message: String },
    /// What a [`Sink`] reported.
    #[error("{0}")]
    Sink(String),
    /// The outputs asked for cannot be computed for this program.
    #[error("{0}")]
    Outputs(String),
}

/// The most values one post-processed map may hold (8192×8192, 256 MiB of f32): every backend
/// keeps a few maps per worker in memory, so a larger one is refused when compiled.
pub const MAX_MAP_VALUES: usize = 1 << 26;

/// What a compiled program hands back for each image, fixed when it is compiled: its raw map
/// (at feature resolution, non-finite values set to 0), its post-processed map (min-max,
/// bilinear resize to `processed`, min-max: docs/run.md), or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Outputs {
    pub raw: bool,
    /// The shape of the post-processed map (`[H,W]`, or `[D,H,W]` for 3-D results).
    pub processed: Option<Vec<usize>>,
    /// The raw map exactly as computed: non-finite values are counted but kept (for
    /// comparing backends value for value); only with the raw map alone.
    pub keep_nonfinite: bool,
}

impl Outputs {
    /// The raw map only (`camc run --raw`).
    pub fn raw() -> Outputs {
        Outputs {
            raw: true,
            processed: None,
            keep_nonfinite: false,
        }
    }

    /// The raw map only, non-finite values kept as computed.
    pub fn untouched() -> Outputs {
        Outputs {
            keep_nonfinite: true,
            ..Outputs::raw()
        }
    }

    /// The map post-processed to `shape` only.
    pub fn processed(shape: Vec<usize>) -> Outputs {
        Outputs {
            raw: false,
            processed: Some(shape),
            keep_nonfinite: false,
        }
    }

    /// Both maps.
    pub fn both(shape: Vec<usize>) -> Outputs {
        Outputs {
            raw: true,
            processed: Some(shape),
            keep_nonfinite: false,
        }
    }

    /// The shape of one raw map of `kernel` on a dataset of `dims`: the output's axes in
    /// canonical order.
    pub fn raw_shape(kernel: &Kernel, dims: Dims) -> Vec<usize> {
        kernel.output_ty().iter().map(|a| dims.size(a)).collect()
    }

    /// Values per image of the raw and the processed map (0 for one not asked for).
    pub fn lens(&self, kernel: &Kernel, dims: Dims) -> (usize, usize) {
        let raw = if self.raw { dims.len(kernel.output_ty()) } else { 0 };
        let processed = self.processed.as_ref().map_or(0, |s| s.iter().product());
        (raw, processed)
    }

    /// Checks that these outputs can be computed for `kernel` on `dims`: something is asked
    /// for, and the processed map has as many axes as the raw one, none of them empty.
    pub fn check(&self, kernel: &Kernel, dims: Dims) -> Result<(), ExecError> {
        let raw = Outputs::raw_shape(kernel, dims);
        match &self.processed {
            None if !self.raw => Err(ExecError::Outputs("no output asked for".into())),
            Some(_) if self.keep_nonfinite => Err(ExecError::Outputs(
                "non-finite values can be kept in the raw map alone, not with a processed map".into(),
            )),
            Some(shape) if shape.len() != raw.len() => Err(ExecError::Outputs(format!(
                "output size {shape:?} does not fit the result's shape {raw:?}"
            ))),
            Some(shape) if shape.contains(&0) => Err(ExecError::Outputs(format!(
                "output size {shape:?} has an empty axis"
            ))),
            Some(shape)
                if shape
                    .iter()
                    .try_fold(1usize, |acc, &s| acc.checked_mul(s))
                    .is_none_or(|values| values > MAX_MAP_VALUES) =>
            {
                Err(ExecError::Outputs(format!(
                    "output size {shape:?} exceeds the limit of {MAX_MAP_VALUES} values per map (8192×8192)"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// What an executor is compiled for: the program, the dataset's axis sizes and the outputs
/// (checked to be computable when the spec is made).
#[derive(Clone, Debug)]
pub struct Spec {
    pub kernel: Kernel,
    pub dims: Dims,
    pub outputs: Outputs,
}

impl Spec {
    pub fn new(kernel: &Kernel, dims: Dims, outputs: Outputs) -> Result<Spec, ExecError> {
        outputs.check(kernel, dims)?;
        Ok(Spec {
            kernel: kernel.clone(),
            dims,
            outputs,
        })
    }

    /// Values per image of the raw and of the processed map (0 for one not asked for).
    pub fn map_lens(&self) -> (usize, usize) {
        self.outputs.lens(&self.kernel, self.dims)
    }

    /// Values per image of each kernel input.
    pub fn input_lens(&self) -> Vec<usize> {
        self.kernel.inputs.iter().map(|i| self.dims.len(i.ty)).collect()
    }

    /// Which of input `j`'s images holds image `image`'s values: `image` itself, or 0 for an
    /// input shared by all images.
    pub fn image_of(&self, j: usize, image: usize) -> usize {
        match self.kernel.inputs[j].kind {
            InputKind::PerImage => image,
            InputKind::Shared => 0,
        }
    }

    /// The shape of one raw map.
    pub fn raw_shape(&self) -> Vec<usize> {
        Outputs::raw_shape(&self.kernel, self.dims)
    }

    /// Checks a batch against the kernel's inputs; every executor calls this first, so a
    /// backend never reads past a buffer.
    pub fn check(&self, batch: &Batch<'_>) -> Result<(), ExecError> {
        if batch.inputs.len() != self.kernel.inputs.len() {
            return Err(ExecError::InputCount {
                expected: self.kernel.inputs.len(),
                got: batch.inputs.len(),
            });
        }
        for ((input, data), len) in self
            .kernel
            .inputs
            .iter()
            .zip(&batch.inputs)
            .zip(self.input_lens())
        {
            let expected = match input.kind {
                InputKind::PerImage => batch.n * len,
                InputKind::Shared => len,
            };
            if data.len() != expected {
                return Err(ExecError::InputLength {
                    name: input.name.clone(),
                    n: batch.n,
                    expected,
                    got: data.len(),
                });
            }
        }
        Ok(())
    }
}

/// One image's results: the maps its [`Outputs`] ask for (an empty slice for one not asked
/// for), and how many non-finite values of the raw map were set to 0.
#[derive(Copy, Clone, Debug)]
pub struct Maps<'a> {
    pub raw: &'a [f32],
    pub processed: &'a [f32],
    pub nonfinite: usize,
}

/// Receives each image's maps as soon as they are computed: `sink(image, maps)`, `image`
/// counted within the batch. Called from several threads at once, in any order of images.
pub type Sink<'a> = dyn Fn(usize, Maps<'_>) -> Result<(), String> + Sync + 'a;

/// A program compiled for one dataset's sizes and one set of [`Outputs`], ready to run batch
/// after batch. Every backend (the interpreter, the Cranelift JIT, CUDA) implements it, and
/// `camc run`, `eval` and `search` all go through [`Executor::run`]; what a backend cannot do
/// is refused when it is built, never in the middle of a run.
pub trait Executor: Send {
    /// `interp`, `cpu` or `cuda`.
    fn backend(&self) -> &'static str;

    /// What the executor was compiled for.
    fn spec(&self) -> &Spec;

    /// What each image's [`Maps`] hold.
    fn outputs(&self) -> &Outputs {
        &self.spec().outputs
    }

    /// Values per image of the raw and of the processed map (0 for one not asked for).
    fn map_lens(&self) -> (usize, usize) {
        self.spec().map_lens()
    }

    /// Runs the program over every image of `batch`, handing each image's maps to `sink`.
    fn run(&mut self, batch: &Batch<'_>, sink: &Sink<'_>) -> Result<(), ExecError>;

    /// [`Executor::run`] into buffers the caller owns, image-major: `raw` and `processed` hold
    /// `batch.n` maps each (empty when not asked for), `nonfinite` a count per image.
    fn run_into(
        &mut self,
        batch: &Batch<'_>,
        raw: &mut [f32],
        processed: &mut [f32],
        nonfinite: &mut [usize],
    ) -> Result<(), ExecError> {
        let (raw_len, processed_len) = self.map_lens();
        for (name, len, per_image) in [
            ("(raw output)", raw.len(), raw_len),
            ("(processed output)", processed.len(), processed_len),
            ("(non-finite counts)", nonfinite.len(), 1),
        ] {
            if len != batch.n * per_image {
                return Err(ExecError::InputLength {
                    name: name.into(),
                    n: batch.n,
                    expected: batch.n * per_image,
                    got: len,
                });
            }
        }
        let raw = slots(raw, batch.n, raw_len);
        let processed = slots(processed, batch.n, processed_len);
        let counts = slots(nonfinite, batch.n, 1);
        let gather = |i: usize, maps: Maps<'_>| {
            let slot = |slots: &[Mutex<&mut [f32]>], map: &[f32]| {
                let mut slot = slots[i].lock().unwrap_or_else(|p| p.into_inner());
                if slot.len() != map.len() {
                    return Err(format!(
                        "image {i}: a map of {} values where {} were expected",
                        map.len(),
                        slot.len()
                    ));
                }
                slot.copy_from_slice(map);
                Ok(())
            };
            slot(&raw, maps.raw)?;
            slot(&processed, maps.processed)?;
            counts[i].lock().unwrap_or_else(|p| p.into_inner())[0] = maps.nonfinite;
            Ok(())
        };
        self.run(batch, &gather)
    }
}

/// `buffer` as `n` slots of `len` values that threads fill independently.
fn slots<T>(buffer: &mut [T], n: usize, len: usize) -> Vec<Mutex<&mut [T]>> {
    if len == 0 {
        return (0..n).map(|_| Mutex::new(&mut [][..])).collect();
    }
    buffer.chunks_mut(len).map(Mutex::new).collect()
}

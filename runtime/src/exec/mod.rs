//! Executors: run a compiled kernel over a batch of images. Every backend (the interpreter, the
//! Cranelift JIT, CUDA) implements [`Executor`]; `camc run`, `eval` and `search` only see the
//! trait. An executor computes the program's raw result at feature resolution; post-processing
//! (SPEC §3) is [`crate::postprocess`].

pub mod cpu;
pub mod cuda;
pub mod interp;

use crate::dims::Dims;
use camc_compiler::ir::Kernel;

/// One kernel input for a whole batch, image-major: image `i` of an input typed `ty` is
/// `data[i * dims.len(ty) .. (i + 1) * dims.len(ty)]`, in canonical axis order (k, d, h, w).
#[derive(Copy, Clone, Debug)]
pub enum Data<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    Bf16(&'a [half::bf16]),
}

impl<'a> Data<'a> {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F16(v) => v.len(),
            Data::Bf16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32 (borrowed when they already are).
    pub fn to_f32(&self) -> std::borrow::Cow<'a, [f32]> {
        match *self {
            Data::F32(v) => std::borrow::Cow::Borrowed(v),
            Data::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Data::Bf16(v) => v.iter().map(|x| x.to_f32()).collect(),
        }
    }
}

/// A batch: `n` images, `inputs[j]` is the kernel's input `j` (see [`Data`]).
#[derive(Clone, Debug)]
pub struct Batch<'a> {
    pub n: usize,
    pub inputs: Vec<Data<'a>>,
    /// Where `inputs[j]` lies in a file, if it does (empty: nowhere). A backend that copies
    /// each image anyway (the CPU JIT) reads it from there, sparing the memory map's page
    /// faults and unmapping (docs/run.md).
    pub files: Vec<Option<FileSpan<'a>>>,
}

impl<'a> Batch<'a> {
    /// A batch of values in memory only.
    pub fn new(n: usize, inputs: Vec<Data<'a>>) -> Batch<'a> {
        Batch {
            n,
            inputs,
            files: Vec::new(),
        }
    }

    /// Where input `j` lies in a file.
    pub fn file(&self, j: usize) -> Option<FileSpan<'a>> {
        self.files.get(j).copied().flatten()
    }

    /// Image `image` of input `j` (`len` values) as f32 in `into`: read from its file where the
    /// batch has one (f16 and bf16 bits through `halves`), else copied and widened from memory.
    /// Either way half-precision values are widened by the same code.
    pub fn image_f32(
        &self,
        j: usize,
        image: usize,
        len: usize,
        into: &mut Vec<f32>,
        halves: &mut Vec<u16>,
    ) -> std::io::Result<()> {
        let data = self.inputs[j];
        let (data, range) = match (data, self.file(j)) {
            (Data::F32(_), Some(span)) => {
                into.resize(len, 0.0);
                return span.read(image, bytemuck::cast_slice_mut(into));
            }
            (Data::F16(_) | Data::Bf16(_), Some(span)) => {
                halves.resize(len, 0);
                span.read(image, bytemuck::cast_slice_mut(halves))?;
                let read = match data {
                    Data::F16(_) => Data::F16(bytemuck::cast_slice(halves)),
                    _ => Data::Bf16(bytemuck::cast_slice(halves)),
                };
                (read, 0..len)
            }
            (data, None) => (data, image * len..(image + 1) * len),
        };
        into.clear();
        match data {
            Data::F32(v) => into.extend_from_slice(&v[range]),
            Data::F16(v) => into.extend(v[range].iter().map(|x| x.to_f32())),
            Data::Bf16(v) => into.extend(v[range].iter().map(|x| x.to_f32())),
        }
        Ok(())
    }
}

/// The values of one input of a batch in a file, stored exactly as its [`Data`] holds them:
/// image `i` is the `image_bytes` bytes at `offset + i * image_bytes`.
#[derive(Copy, Clone, Debug)]
pub struct FileSpan<'a> {
    pub file: &'a std::fs::File,
    pub offset: u64,
    pub image_bytes: usize,
}

impl FileSpan<'_> {
    /// Reads image `image` into `into` (`image_bytes` long).
    pub fn read(&self, image: usize, into: &mut [u8]) -> std::io::Result<()> {
        if into.len() != self.image_bytes {
            return Err(std::io::Error::other(format!(
                "{} bytes asked for an image of {}",
                into.len(),
                self.image_bytes
            )));
        }
        let offset = self.offset + (image * self.image_bytes) as u64;
        read_exact_at(self.file, into, offset)
    }
}

#[cfg(unix)]
fn read_exact_at(file: &std::fs::File, into: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, into, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &std::fs::File, mut into: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !into.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, into, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        into = &mut into[n..];
        offset += n as u64;
    }
    Ok(())
}

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
    /// What an [`ImageSink`] reported.
    #[error("{0}")]
    Sink(String),
}

/// Receives each post-processed map as soon as it is computed: `sink(image, map)`, `image`
/// counted within the batch. Called from several threads at once, in any order of images.
pub type ImageSink<'a> = dyn Fn(usize, &[f32]) -> Result<(), String> + Sync + 'a;

/// A kernel compiled for one dataset's sizes, ready to run batch after batch.
pub trait Executor: Send {
    /// `interp`, `cpu` or `cuda`.
    fn backend(&self) -> &'static str;

    /// Writes the raw results of the batch, image-major: `out` holds
    /// `batch.n * dims.len(kernel.output_ty())` values.
    fn run(&mut self, batch: &Batch<'_>, out: &mut [f32]) -> Result<(), ExecError>;

    /// Runs the batch and post-processes each image to `size` as SPEC §3 says (non-finite
    /// values set to 0, min-max, bilinear resize, min-max) in the backend itself: `out` holds
    /// `batch.n` maps of `size`, `bad[i]` the count of non-finite values of image `i`.
    /// `Ok(false)`, touching nothing, where the backend does not (the caller then runs
    /// [`Executor::run`] and post-processes on the host).
    fn run_scaled(
        &mut self,
        _batch: &Batch<'_>,
        _size: &[usize],
        _out: &mut [f32],
        _bad: &mut [usize],
    ) -> Result<bool, ExecError> {
        Ok(false)
    }

    /// [`Executor::run_scaled`], each map handed to `sink` instead of written into one buffer
    /// for the whole batch. The default runs [`Executor::run_scaled`] into such a buffer and
    /// hands its maps on; the CPU executor hands each over from its worker, still in cache.
    fn run_scaled_each(
        &mut self,
        batch: &Batch<'_>,
        size: &[usize],
        bad: &mut [usize],
        sink: &ImageSink<'_>,
    ) -> Result<bool, ExecError> {
        let per_image: usize = size.iter().product();
        let mut out = vec![0.0; batch.n * per_image];
        if !self.run_scaled(batch, size, &mut out, bad)? {
            return Ok(false);
        }
        for (image, map) in out.chunks(per_image.max(1)).enumerate().take(batch.n) {
            sink(image, map).map_err(ExecError::Sink)?;
        }
        Ok(true)
    }
}

/// Checks a batch against the kernel's inputs and `out`'s length; every executor calls this
/// first, so a backend never reads past a buffer.
pub fn check_batch(kernel: &Kernel, dims: Dims, batch: &Batch<'_>, out: &[f32]) -> Result<(), ExecError> {
    check_lengths(kernel, dims, batch, out.len(), dims.len(kernel.output_ty()))
}

/// [`check_batch`] for [`Executor::run_scaled`]: the output (`out_len` values) holds `size`
/// maps, `bad` a count per image.
pub fn check_scaled_batch(
    kernel: &Kernel,
    dims: Dims,
    batch: &Batch<'_>,
    size: [usize; 2],
    out_len: usize,
    bad: &[usize],
) -> Result<(), ExecError> {
    check_lengths(kernel, dims, batch, out_len, size[0] * size[1])?;
    if bad.len() != batch.n {
        return Err(ExecError::InputLength {
            name: "(non-finite counts)".into(),
            n: batch.n,
            expected: batch.n,
            got: bad.len(),
        });
    }
    Ok(())
}

fn check_lengths(
    kernel: &Kernel,
    dims: Dims,
    batch: &Batch<'_>,
    out_len: usize,
    out_per_image: usize,
) -> Result<(), ExecError> {
    if batch.inputs.len() != kernel.inputs.len() {
        return Err(ExecError::InputCount {
            expected: kernel.inputs.len(),
            got: batch.inputs.len(),
        });
    }
    for (input, data) in kernel.inputs.iter().zip(&batch.inputs) {
        let expected = batch.n * dims.len(input.ty);
        if data.len() != expected {
            return Err(ExecError::InputLength {
                name: input.name.clone(),
                n: batch.n,
                expected,
                got: data.len(),
            });
        }
    }
    let expected = batch.n * out_per_image;
    if out_len != expected {
        return Err(ExecError::InputLength {
            name: "(output)".into(),
            n: batch.n,
            expected,
            got: out_len,
        });
    }
    Ok(())
}

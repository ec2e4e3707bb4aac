//! The values a program runs over: a batch of images, each kernel input a slice of f32, f16,
//! bf16 or integer values in memory, and where the slice also lies in a file (a cache). Cache
//! readers produce batches and executors consume them; neither knows the other.

use camc_compiler::dtype::Dtype;

/// One kernel input for a whole batch, image-major: image `i` of an input typed `ty` is
/// `data[i * dims.len(ty) .. (i + 1) * dims.len(ty)]`, in canonical axis order (k, d, h, w);
/// an input shared by all images (`InputKind::Shared`) is `dims.len(ty)` values. Programs
/// compute in f32: integers (a class index per image) are read as the nearest f32.
#[derive(Copy, Clone, Debug)]
pub enum Data<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    Bf16(&'a [half::bf16]),
    I64(&'a [i64]),
    I32(&'a [i32]),
}

impl<'a> Data<'a> {
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F16(v) => v.len(),
            Data::Bf16(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> Dtype {
        match self {
            Data::F32(_) => Dtype::F32,
            Data::F16(_) => Dtype::F16,
            Data::Bf16(_) => Dtype::Bf16,
            Data::I64(_) => Dtype::I64,
            Data::I32(_) => Dtype::I32,
        }
    }

    /// The values as f32 (borrowed when they already are).
    pub fn to_f32(&self) -> std::borrow::Cow<'a, [f32]> {
        match *self {
            Data::F32(v) => std::borrow::Cow::Borrowed(v),
            Data::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Data::Bf16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
            Data::I32(v) => v.iter().map(|&x| x as f32).collect(),
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
            (data, _) => (data, image * len..(image + 1) * len),
        };
        into.clear();
        match data {
            Data::F32(v) => into.extend_from_slice(&v[range]),
            Data::F16(v) => into.extend(v[range].iter().map(|x| x.to_f32())),
            Data::Bf16(v) => into.extend(v[range].iter().map(|x| x.to_f32())),
            Data::I64(v) => into.extend(v[range].iter().map(|&x| x as f32)),
            Data::I32(v) => into.extend(v[range].iter().map(|&x| x as f32)),
        }
        Ok(())
    }
}

/// The values of one input of a batch in a file, stored exactly as its [`Data`] holds them:
/// image `i` is the `image_bytes` bytes at `offset + i * image_bytes`.
#[derive(Copy, Clone, Debug)]
pub struct FileSpan<'a> {
    /// The file's name, for messages.
    pub path: &'a std::path::Path,
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
        read_exact_at(self.file, into, offset).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    "the file ends before it (was it cut short while camc read it?)".to_string()
                }
                _ => e.to_string(),
            };
            std::io::Error::new(e.kind(), format!("`{}`: {why}", self.path.display()))
        })
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

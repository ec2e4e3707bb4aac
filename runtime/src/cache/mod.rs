//! Caches of activations and gradients (docs/cache.md): a safetensors file, a directory of `.npy`
//! files with `meta.json`, or several shards given as a glob, read as one dataset. Files are
//! memory-mapped; nothing is read until a batch asks for it. Each file also stays open, so that a
//! backend copying images anyway (the CPU JIT) can read them with positional reads instead of
//! through the map ([`FileSpan`], docs/run.md).

mod bind;
mod dtype;
mod npy;
mod safetensors_file;

pub use bind::{Binding, BoundBatch};
pub use dtype::Values;

use crate::batch::FileSpan;
use camc_compiler::dims::Dims;
use camc_compiler::dtype::Dtype;
use camc_compiler::span::Span;
use memmap2::Mmap;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache `{path}`: {message}")]
    File { path: PathBuf, message: String },
    #[error("cache `{path}`, tensor `{tensor}`: {message}")]
    Tensor {
        path: PathBuf,
        tensor: String,
        message: String,
    },
    #[error("{0}")]
    Other(String),
    /// An error about the tensor a program input binds to, with that input's declaration.
    #[error("{error}")]
    Input { span: Span, error: Box<CacheError> },
}

impl CacheError {
    /// This error, about the program input declared at `span`.
    pub fn at(self, span: Span) -> CacheError {
        CacheError::Input {
            span,
            error: Box::new(self),
        }
    }

    /// The program source the error is about, where there is one.
    pub fn span(&self) -> Option<Span> {
        match self {
            CacheError::Input { span, .. } => Some(*span),
            _ => None,
        }
    }

    /// The file and the tensor this error says the file lacks, if that is what it says.
    pub fn missing_tensor(&self) -> Option<(&Path, &str)> {
        match self {
            CacheError::Input { error, .. } => error.missing_tensor(),
            // Every "tensor is absent" error is made with a message that starts so.
            CacheError::Tensor {
                path,
                tensor,
                message,
            } if message.starts_with("missing") => Some((path, tensor)),
            _ => None,
        }
    }

    pub fn file(path: &Path, message: impl Into<String>) -> CacheError {
        CacheError::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub fn tensor(path: &Path, tensor: &str, message: impl Into<String>) -> CacheError {
        CacheError::Tensor {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            message: message.into(),
        }
    }
}

/// One tensor of a shard: where its bytes are, and what they hold.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Which of the shard's mapped files holds it, and the byte range there.
    file: usize,
    range: std::ops::Range<usize>,
}

/// A file of a shard, open and mapped; derefs to its bytes.
pub(crate) struct MappedFile {
    path: PathBuf,
    file: File,
    map: Mmap,
}

impl std::ops::Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// One file of a dataset (or one `.npy` directory).
pub struct Shard {
    pub path: PathBuf,
    maps: Vec<MappedFile>,
    pub tensors: BTreeMap<String, TensorInfo>,
    pub metadata: BTreeMap<String, String>,
}

impl Shard {
    fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.maps[info.file][info.range.clone()]
    }

    /// Where images `rows` of tensor `name` lie in their file, if it stores them as the
    /// values of a batch hold them (f32, f16 or bf16).
    pub fn span(&self, name: &str, rows: &std::ops::Range<usize>) -> Option<FileSpan<'_>> {
        let info = self.tensors.get(name)?;
        // Integer tensors are converted to f32 when read (`Values`), so no span holds them.
        if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::Bf16) {
            return None;
        }
        let image_bytes = info.shape.iter().skip(1).product::<usize>() * info.dtype.size();
        Some(FileSpan {
            path: &self.maps[info.file].path,
            file: &self.maps[info.file].file,
            offset: (info.range.start + rows.start * image_bytes) as u64,
            image_bytes,
        })
    }

    /// Where a whole tensor lies in its file, as one "image" (an input shared by all images).
    pub fn span_whole(&self, name: &str) -> Option<FileSpan<'_>> {
        let info = self.tensors.get(name)?;
        if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::Bf16) {
            return None;
        }
        Some(FileSpan {
            path: &self.maps[info.file].path,
            file: &self.maps[info.file].file,
            offset: info.range.start as u64,
            image_bytes: info.range.len(),
        })
    }

    /// A whole tensor's values (an input shared by all images).
    pub fn whole(&self, name: &str) -> Result<Values<'_>, CacheError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| CacheError::tensor(&self.path, name, "missing"))?;
        Values::from_bytes(info.dtype, self.bytes(info)).map_err(|m| CacheError::tensor(&self.path, name, m))
    }

    /// The shard's images: the leading size of `A`.
    pub fn images(&self) -> Result<usize, CacheError> {
        let a = self.tensors.get("A").ok_or_else(|| {
            CacheError::tensor(&self.path, "A", "missing: every cache needs the activations `A`")
        })?;
        a.shape
            .first()
            .copied()
            .ok_or_else(|| CacheError::tensor(&self.path, "A", "is a scalar; expected [n,k,h,w]"))
    }

    /// Images `rows` of a tensor whose leading axis is the image axis.
    pub fn rows(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Values<'_>, CacheError> {
        let info = self.rows_of(name, &rows)?;
        let per_row: usize = info.shape.iter().skip(1).product();
        let size = info.dtype.size();
        let bytes = &self.bytes(info)[rows.start * per_row * size..rows.end * per_row * size];
        Values::from_bytes(info.dtype, bytes).map_err(|m| CacheError::tensor(&self.path, name, m))
    }

    /// Tensor `name`, which must hold rows `rows`.
    fn rows_of(&self, name: &str, rows: &std::ops::Range<usize>) -> Result<&TensorInfo, CacheError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| CacheError::tensor(&self.path, name, "missing"))?;
        let leading = info.shape.first().copied().unwrap_or(1);
        if rows.end > leading {
            return Err(CacheError::tensor(
                &self.path,
                name,
                format!("has {leading} rows, asked for {}..{}", rows.start, rows.end),
            ));
        }
        Ok(info)
    }

    /// Rows `rows` of a float tensor as f32, read from its file with positional reads rather
    /// than through the map, so that a file cut short while camc reads it is an error (through
    /// the map it would be a SIGBUS).
    pub fn read_rows_f32(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Vec<f32>, CacheError> {
        let info = self.rows_of(name, &rows)?;
        let Some(span) = self.span(name, &rows) else {
            return Ok(self.rows(name, rows)?.to_f32().into_owned());
        };
        let mut bytes = vec![0u8; rows.len() * span.image_bytes];
        for (i, row) in bytes.chunks_mut(span.image_bytes.max(1)).enumerate() {
            span.read(i, row)
                .map_err(|e| CacheError::tensor(&self.path, name, format!("row {}: {e}", rows.start + i)))?;
        }
        let values =
            Values::from_bytes(info.dtype, &bytes).map_err(|m| CacheError::tensor(&self.path, name, m))?;
        Ok(values.to_f32().into_owned())
    }

    /// A whole tensor as f32 (for small tensors: boxes, targets, the head).
    pub fn f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), CacheError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| CacheError::tensor(&self.path, name, "missing"))?;
        let values = Values::from_bytes(info.dtype, self.bytes(info))
            .map_err(|m| CacheError::tensor(&self.path, name, m))?;
        Ok((info.shape.clone(), values.to_f32().into_owned()))
    }

    /// A whole tensor's raw bytes (for `image`, uint8).
    pub fn raw(&self, name: &str) -> Option<(&TensorInfo, &[u8])> {
        self.tensors.get(name).map(|info| (info, self.bytes(info)))
    }
}

/// A dataset: one or more shards with the same tensors, in order.
pub struct Cache {
    /// What the user gave (`--cache`), for messages.
    pub spec: String,
    pub shards: Vec<Shard>,
}

impl Cache {
    /// Opens a `.safetensors` file, a directory of `.npy` files, or a glob of either.
    pub fn open(spec: &str) -> Result<Cache, CacheError> {
        let paths = expand(spec)?;
        let shards = paths
            .iter()
            .map(|p| open_shard(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cache {
            spec: spec.to_string(),
            shards,
        })
    }

    pub fn images(&self) -> Result<usize, CacheError> {
        self.shards.iter().map(Shard::images).sum()
    }

    /// The axis sizes of `A`, the same in every shard, none of them empty.
    pub fn dims(&self) -> Result<Dims, CacheError> {
        let mut dims = None;
        for shard in &self.shards {
            let these = bind::dims_of(shard)?;
            if dims.is_some_and(|d| d != these) {
                return Err(CacheError::tensor(
                    &shard.path,
                    "A",
                    format!(
                        "has sizes {these:?}, unlike the first shard ({:?})",
                        dims.unwrap_or(these)
                    ),
                ));
            }
            dims = Some(these);
        }
        dims.ok_or_else(|| CacheError::Other(format!("cache `{}` has no shard", self.spec)))
    }

    /// `image_size` from the first shard's metadata: the network input size `(H, W)`.
    pub fn image_size(&self) -> Result<Option<Vec<usize>>, CacheError> {
        let Some(first) = self.shards.first() else {
            return Ok(None);
        };
        let Some(text) = first.metadata.get("image_size") else {
            return Ok(None);
        };
        parse_size(text).map(Some).ok_or_else(|| {
            CacheError::file(&first.path, format!("metadata image_size `{text}` is not `H,W`"))
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.shards.iter().all(|s| s.tensors.contains_key(name))
    }
}

/// `"224,224"` → `[224, 224]`; every size positive.
pub fn parse_size(text: &str) -> Option<Vec<usize>> {
    let sizes: Option<Vec<usize>> = text.split(',').map(|s| s.trim().parse().ok()).collect();
    sizes.filter(|s| !s.is_empty() && s.len() <= 3 && s.iter().all(|&v| v > 0 && v <= 1 << 16))
}

fn expand(spec: &str) -> Result<Vec<PathBuf>, CacheError> {
    let is_glob = spec.contains(['*', '?', '[']);
    if !is_glob {
        let path = PathBuf::from(spec);
        if !path.exists() {
            return Err(CacheError::file(&path, "no such file or directory"));
        }
        return Ok(vec![path]);
    }
    let pattern = glob::glob(spec).map_err(|e| CacheError::Other(format!("cache pattern `{spec}`: {e}")))?;
    let mut paths: Vec<PathBuf> = pattern.filter_map(Result::ok).collect();
    paths.sort();
    if paths.is_empty() {
        return Err(CacheError::Other(format!(
            "cache pattern `{spec}` matches no file"
        )));
    }
    Ok(paths)
}

fn open_shard(path: &Path) -> Result<Shard, CacheError> {
    if path.is_dir() {
        npy::open_dir(path)
    } else {
        safetensors_file::open(path)
    }
}

/// Opens `path` for reading if it is a regular file (a FIFO would block, a device never end).
fn open_regular(path: &Path) -> Result<File, CacheError> {
    let metadata =
        std::fs::metadata(path).map_err(|e| CacheError::file(path, format!("cannot open: {e}")))?;
    if !metadata.is_file() {
        let kind = if metadata.is_dir() {
            "a directory"
        } else {
            "a special file"
        };
        return Err(CacheError::file(path, format!("is {kind}, not a regular file")));
    }
    std::fs::File::open(path).map_err(|e| CacheError::file(path, format!("cannot open: {e}")))
}

/// A whole small regular file (metadata), at most `limit` bytes.
fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, CacheError> {
    let file = open_regular(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)
        .map_err(|e| CacheError::file(path, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(CacheError::file(path, format!("is larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// Opens and maps a whole file read-only.
fn map(path: &Path) -> Result<MappedFile, CacheError> {
    let file = open_regular(path)?;
    // SAFETY: the map is read-only; a cache rewritten while camc reads it may give wrong
    // values, never undefined behaviour beyond what reading a changing file gives.
    let map = unsafe { memmap2::MmapOptions::new().map(&file) }
        .map_err(|e| CacheError::file(path, format!("cannot map: {e}")))?;
    #[cfg(unix)]
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(MappedFile {
        path: path.to_path_buf(),
        file,
        map,
    })
}

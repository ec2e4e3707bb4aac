//! Writing results: tensor `heatmap` `[n, ...]` f32 to `.npy` or `.safetensors`. The file is
//! created at its full size and written with positional writes (`pwrite`), so that the workers
//! of an executor write each image's map where it belongs as soon as it is computed, from a
//! buffer still in their cache, in parallel, and a result larger than memory can be written.
//!
//! The file is written beside its destination and moved into place by [`HeatmapWriter::finish`]
//! ([`crate::output`]): a run that fails or is killed leaves no partial file and keeps the
//! previous one.
//!
//! A shared writable map of the file was measured slower (2-vCPU sandbox, ext4, 256 maps of
//! 224×224 from two threads, blocks reserved first): 27–41 ms against 16–28 ms for `pwrite` of
//! a few images at a time, the map paying a page fault and a zeroed page per 4 KiB.

use crate::output::{OutputError, OutputFile};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, thiserror::Error)]
#[error("output `{path}`: {message}")]
pub struct WriteError {
    pub path: PathBuf,
    pub message: String,
}

impl From<OutputError> for WriteError {
    fn from(error: OutputError) -> WriteError {
        match error {
            OutputError::Io { path, message } => WriteError { path, message },
            other @ OutputError::IsInput { .. } => WriteError {
                path: PathBuf::new(),
                message: other.to_string(),
            },
        }
    }
}

pub struct HeatmapWriter {
    path: PathBuf,
    output: OutputFile,
    /// Bytes of the header, where the values start (a multiple of 8).
    header: usize,
    expected: usize,
    /// Values written so far, by [`HeatmapWriter::write`] and [`HeatmapWriter::write_at`]
    /// together (each value is written once).
    written: AtomicUsize,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Format {
    Npy,
    Safetensors,
}

impl Format {
    pub fn of(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "npy" => Some(Format::Npy),
            "safetensors" => Some(Format::Safetensors),
            _ => None,
        }
    }
}

fn npy_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|s| s.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    // Magic (6) + version (2) + length (2) + dict + newline, padded to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header
}

fn safetensors_header(shape: &[usize], metadata: &[(&str, String)]) -> Vec<u8> {
    let bytes = shape.iter().product::<usize>() * 4;
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone())))
            .collect();
        header.insert("__metadata__".into(), meta.into());
    }
    header.insert(
        "heatmap".into(),
        serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [0, bytes]}),
    );
    let mut json = serde_json::Value::Object(header).to_string();
    json.push_str(&" ".repeat((8 - json.len() % 8) % 8));
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out
}

impl HeatmapWriter {
    /// Creates `path` for a `heatmap` tensor of `shape` (`[n, ...]`), in the format its
    /// extension names.
    pub fn create(
        path: &Path,
        shape: &[usize],
        metadata: &[(&str, String)],
    ) -> Result<HeatmapWriter, WriteError> {
        let error = |message: String| WriteError {
            path: path.to_path_buf(),
            message,
        };
        let header = match Format::of(path) {
            Some(Format::Npy) => npy_header(shape),
            Some(Format::Safetensors) => safetensors_header(shape, metadata),
            None => return Err(error("the output must end in .npy or .safetensors".into())),
        };
        let expected: usize = shape.iter().product();
        let total = expected
            .checked_mul(4)
            .and_then(|bytes| bytes.checked_add(header.len()))
            .ok_or_else(|| error(format!("a result of shape {shape:?} is too large")))?;
        let output = OutputFile::create(path).map_err(WriteError::from)?;
        let writer = HeatmapWriter {
            path: path.to_path_buf(),
            output,
            header: header.len(),
            expected,
            written: AtomicUsize::new(0),
        };
        // Sized and reserved up front, so that images written out of order leave no gap and
        // a full disk is reported before any work.
        let file = writer.output.file();
        let sized = if writer.output.is_regular() {
            file.set_len(total as u64).and_then(|()| reserve(file, total))
        } else {
            Ok(())
        };
        sized
            .and_then(|()| write_all_at(file, &header, 0))
            .map_err(|e| writer.error(format!("cannot write: {e}")))?;
        Ok(writer)
    }

    /// Writes `values` as values `first..first + values.len()` of the tensor; callable from
    /// several threads at once, for disjoint ranges.
    pub fn write_at(&self, first: usize, values: &[f32]) -> Result<(), WriteError> {
        if first + values.len() > self.expected {
            return Err(self.error(format!(
                "values {first}..{} written, the declared shape holds {}",
                first + values.len(),
                self.expected
            )));
        }
        let offset = (self.header + first * 4) as u64;
        write_all_at(self.output.file(), bytemuck::cast_slice(values), offset)
            .map_err(|e| self.error(format!("cannot write: {e}")))?;
        self.written.fetch_add(values.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Appends `values` after those written so far (for a writer that writes in order).
    pub fn write(&mut self, values: &[f32]) -> Result<(), WriteError> {
        let first = *self.written.get_mut();
        self.write_at(first, values)
    }

    /// The file must have received exactly the declared number of values; it is then moved
    /// into place. A writer dropped before leaves nothing at its path.
    pub fn finish(mut self) -> Result<(), WriteError> {
        let written = *self.written.get_mut();
        if written != self.expected {
            return Err(self.error(format!("wrote {written} of {} values", self.expected)));
        }
        self.output.commit().map_err(WriteError::from)
    }

    fn error(&self, message: String) -> WriteError {
        WriteError {
            path: self.path.clone(),
            message,
        }
    }
}

/// Makes sure the file's blocks exist, so that a full disk is an error before any work rather
/// than after it: `posix_fallocate` (on ext4 it also made the writes faster: 16–28 ms against
/// 21–37 ms without it), except on tmpfs, where it would zero every page on one thread
/// before the workers write them (measured: ~15% of a `camc run`), so the free space is
/// checked instead.
#[cfg(target_os = "linux")]
fn reserve(file: &std::fs::File, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: plain system calls on an open descriptor, into zeroed structures of their type.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(fd, &mut fs) == 0 && fs.f_type == libc::TMPFS_MAGIC {
            let mut vfs: libc::statvfs = std::mem::zeroed();
            if libc::fstatvfs(fd, &mut vfs) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let free = (vfs.f_bavail as u128) * (vfs.f_frsize as u128);
            if free < bytes as u128 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!("{bytes} bytes needed, {free} free"),
                ));
            }
            return Ok(());
        }
        match libc::posix_fallocate(fd, 0, bytes as libc::off_t) {
            0 => Ok(()),
            // Filesystems without fallocate: the map's faults are the only check left.
            libc::EOPNOTSUPP | libc::EINVAL => Ok(()),
            code => Err(std::io::Error::from_raw_os_error(code)),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn reserve(_: &std::fs::File, _: usize) -> std::io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(windows)]
fn write_all_at(file: &File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

//! Writing results: tensor `heatmap` `[n, ...]` f32 to `.npy` or `.safetensors`. The file is
//! created at its full size and mapped, so that executors write results straight into it (no
//! buffer, no copy) and a result larger than memory can still be written: the kernel writes the
//! mapped pages back as it needs the memory.

use memmap2::MmapMut;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("output `{path}`: {message}")]
pub struct WriteError {
    pub path: PathBuf,
    pub message: String,
}

pub struct HeatmapWriter {
    path: PathBuf,
    map: MmapMut,
    /// Bytes of the header, where the values start (a multiple of 8).
    header: usize,
    expected: usize,
    written: usize,
    /// Whether [`HeatmapWriter::finish`] succeeded: a writer dropped before removes its file,
    /// whose unwritten values would read as zeros.
    finished: bool,
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
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| error(format!("cannot create: {e}")))?;
        let expected: usize = shape.iter().product();
        let total = expected
            .checked_mul(4)
            .and_then(|bytes| bytes.checked_add(header.len()))
            .ok_or_else(|| error(format!("a result of shape {shape:?} is too large")))?;
        file.set_len(total as u64)
            .map_err(|e| error(format!("cannot write: {e}")))?;
        let removing = |message: String| {
            let _ = std::fs::remove_file(path);
            error(message)
        };
        reserve(&file, total).map_err(|e| removing(format!("cannot write: {e}")))?;
        // SAFETY: the file was just created by this process, which alone writes it through
        // this map; another process changing it meanwhile changes the result, nothing else.
        let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| removing(format!("cannot map: {e}")))?;
        map[..header.len()].copy_from_slice(&header);
        Ok(HeatmapWriter {
            path: path.to_path_buf(),
            map,
            header: header.len(),
            expected,
            written: 0,
            finished: false,
        })
    }

    /// Every value of the file, for a writer that fills them all (in any order); the file then
    /// counts as fully written.
    pub fn values_mut(&mut self) -> &mut [f32] {
        self.written = self.expected;
        bytemuck::cast_slice_mut(&mut self.map[self.header..])
    }

    /// Appends `values` after those written so far.
    pub fn write(&mut self, values: &[f32]) -> Result<(), WriteError> {
        let start = self.written;
        self.written += values.len();
        if self.written > self.expected {
            return Err(self.error("more values than the declared shape".into()));
        }
        let at = self.header + start * 4;
        self.map[at..at + values.len() * 4].copy_from_slice(bytemuck::cast_slice(values));
        Ok(())
    }

    /// The file must have received exactly the declared number of values.
    pub fn finish(mut self) -> Result<(), WriteError> {
        if self.written != self.expected {
            return Err(self.error(format!("wrote {} of {} values", self.written, self.expected)));
        }
        self.finished = true;
        Ok(())
    }

    fn error(&self, message: String) -> WriteError {
        WriteError {
            path: self.path.clone(),
            message,
        }
    }
}

impl Drop for HeatmapWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes sure the file's blocks exist, so that a full disk is an error here rather than a fault
/// (SIGBUS) when a page of the map is first written: `posix_fallocate`, except on tmpfs, where
/// it would zero every page on one thread before the executors write them (measured: ~15% of a
/// `camc run`), so the free space is checked instead.
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

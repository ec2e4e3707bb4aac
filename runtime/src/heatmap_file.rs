//! Writing results: tensor `heatmap` `[n, ...]` f32 to `.npy` or `.safetensors`, streamed image
//! by image so a result larger than memory can be written.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("output `{path}`: {message}")]
pub struct WriteError {
    pub path: PathBuf,
    pub message: String,
}

pub struct HeatmapWriter {
    path: PathBuf,
    file: BufWriter<std::fs::File>,
    expected: usize,
    written: usize,
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
        let file = std::fs::File::create(path).map_err(|e| error(format!("cannot create: {e}")))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&header)
            .map_err(|e| error(format!("cannot write: {e}")))?;
        Ok(HeatmapWriter {
            path: path.to_path_buf(),
            file,
            expected: shape.iter().product(),
            written: 0,
        })
    }

    pub fn write(&mut self, values: &[f32]) -> Result<(), WriteError> {
        self.written += values.len();
        if self.written > self.expected {
            return Err(self.error("more values than the declared shape".into()));
        }
        let bytes: &[u8] = bytemuck::cast_slice(values);
        self.file
            .write_all(bytes)
            .map_err(|e| self.error(format!("cannot write: {e}")))
    }

    /// Flushes; the file must have received exactly the declared number of values.
    pub fn finish(mut self) -> Result<(), WriteError> {
        if self.written != self.expected {
            return Err(self.error(format!("wrote {} of {} values", self.written, self.expected)));
        }
        self.file
            .flush()
            .map_err(|e| self.error(format!("cannot write: {e}")))?;
        Ok(())
    }

    fn error(&self, message: String) -> WriteError {
        WriteError {
            path: self.path.clone(),
            message,
        }
    }
}

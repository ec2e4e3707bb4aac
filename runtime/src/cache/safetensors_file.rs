//! A safetensors shard, memory-mapped. The `safetensors` crate validates the header; when it
//! refuses a file, the header is read again here to name the tensor at fault.

use super::{map, CacheError, Shard, TensorInfo};
use camc_compiler::dtype::Dtype;
use safetensors::tensor::SafeTensorError;
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::Path;

pub fn open(path: &Path) -> Result<Shard, CacheError> {
    let mapped = map(path)?;
    let (header_len, metadata) =
        SafeTensors::read_metadata(&mapped).map_err(|e| explain(path, &mapped, e))?;
    let data_start = 8 + header_len;
    let mut tensors = BTreeMap::new();
    for (name, info) in metadata.tensors() {
        let dtype = dtype(info.dtype).ok_or_else(|| {
            CacheError::tensor(
                path,
                &name,
                format!("has dtype {:?}, which camc cannot read", info.dtype),
            )
        })?;
        let (start, end) = info.data_offsets;
        tensors.insert(
            name,
            TensorInfo {
                dtype,
                shape: info.shape.clone(),
                file: 0,
                range: data_start + start..data_start + end,
            },
        );
    }
    let metadata = metadata
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(Shard {
        path: path.to_path_buf(),
        maps: vec![mapped],
        tensors,
        metadata,
    })
}

fn dtype(d: safetensors::Dtype) -> Option<Dtype> {
    Some(match d {
        safetensors::Dtype::F32 => Dtype::F32,
        safetensors::Dtype::F16 => Dtype::F16,
        safetensors::Dtype::BF16 => Dtype::Bf16,
        safetensors::Dtype::F64 => Dtype::F64,
        safetensors::Dtype::I64 => Dtype::I64,
        safetensors::Dtype::I32 => Dtype::I32,
        safetensors::Dtype::U8 => Dtype::U8,
        safetensors::Dtype::BOOL => Dtype::Bool,
        _ => return None,
    })
}

fn explain(path: &Path, bytes: &[u8], error: SafeTensorError) -> CacheError {
    let message = match error {
        SafeTensorError::HeaderTooSmall => {
            "shorter than a safetensors header (8 bytes): empty or truncated".into()
        }
        SafeTensorError::InvalidHeaderLength => format!(
            "header length {} runs past the end of the file ({} bytes): truncated, or not a safetensors file",
            header_len(bytes).unwrap_or(0),
            bytes.len()
        ),
        SafeTensorError::HeaderTooLarge => "header length is absurd: not a safetensors file".into(),
        SafeTensorError::InvalidHeader(_) | SafeTensorError::InvalidHeaderStart => {
            "header is not UTF-8 JSON: not a safetensors file".into()
        }
        SafeTensorError::InvalidHeaderDeserialization(e) => {
            format!("header is not valid safetensors JSON: {e}")
        }
        SafeTensorError::MetadataIncompleteBuffer => return truncated(path, bytes),
        SafeTensorError::TensorInvalidInfo => return inconsistent(path, bytes),
        SafeTensorError::InvalidOffset(name) => {
            return CacheError::tensor(path, &name, "data offsets in the header overlap or leave gaps")
        }
        other => format!("not a valid safetensors file: {other}"),
    };
    CacheError::file(path, message)
}

fn header_len(bytes: &[u8]) -> Option<usize> {
    let len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    usize::try_from(len).ok()
}

/// The header's tensors as `(name, dtype, shape, start, end)`, for messages.
fn entries(bytes: &[u8]) -> Vec<(String, String, Vec<u64>, u64, u64)> {
    let Some(len) = header_len(bytes) else {
        return Vec::new();
    };
    let Some(json) = bytes.get(8..8usize.saturating_add(len)) else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Object(header)) = serde_json::from_slice(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, entry) in header {
        let field = |key: &str| entry.get(key).cloned().unwrap_or_default();
        let numbers = |v: serde_json::Value| -> Vec<u64> {
            v.as_array()
                .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_default()
        };
        let offsets = numbers(field("data_offsets"));
        if let [start, end] = offsets[..] {
            let dtype = field("dtype").as_str().unwrap_or("?").to_string();
            out.push((name, dtype, numbers(field("shape")), start, end));
        }
    }
    out
}

fn truncated(path: &Path, bytes: &[u8]) -> CacheError {
    let available = (bytes.len() as u64).saturating_sub(8 + header_len(bytes).unwrap_or(0) as u64);
    let short = entries(bytes)
        .into_iter()
        .filter(|e| e.4 > available)
        .min_by_key(|e| e.3);
    match short {
        Some((name, _, _, _, end)) => CacheError::tensor(
            path,
            &name,
            format!("the header puts its data up to byte {end} of the data section, which has only {available} bytes: the file is truncated"),
        ),
        None => CacheError::file(
            path,
            format!("the data section has {available} bytes, more than the header's tensors cover"),
        ),
    }
}

fn inconsistent(path: &Path, bytes: &[u8]) -> CacheError {
    for (name, dtype, shape, start, end) in entries(bytes) {
        let size: u64 = match dtype.as_str() {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            _ => 1,
        };
        let expected = shape.iter().try_fold(size, |acc, &s| acc.checked_mul(s));
        if expected != end.checked_sub(start) {
            return CacheError::tensor(
                path,
                &name,
                format!(
                    "header says {dtype} {shape:?} ({} bytes) but gives it {} bytes",
                    expected.map_or("too many".into(), |e| e.to_string()),
                    end.saturating_sub(start)
                ),
            );
        }
    }
    CacheError::file(path, "a tensor's shape and dtype disagree with its data offsets")
}

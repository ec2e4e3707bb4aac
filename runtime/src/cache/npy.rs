//! A directory of `.npy` files (one per tensor, named like the tensor: `A.npy`,
//! `head.weight.npy`) plus an optional `meta.json` of string metadata (`image_size`, ...).

use super::{map, CacheError, Shard, TensorInfo};
use camc_compiler::dtype::Dtype;
use std::collections::BTreeMap;
use std::path::Path;

pub fn open_dir(dir: &Path) -> Result<Shard, CacheError> {
    let entries = std::fs::read_dir(dir).map_err(|e| CacheError::file(dir, format!("cannot list: {e}")))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "npy"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(CacheError::file(dir, "holds no .npy files"));
    }
    let mut maps = Vec::new();
    let mut tensors = BTreeMap::new();
    for path in files {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mapped = map(&path)?;
        let info = header(&path, &name, &mapped, maps.len())?;
        tensors.insert(name, info);
        maps.push(mapped);
    }
    Ok(Shard {
        path: dir.to_path_buf(),
        maps,
        tensors,
        metadata: metadata(dir)?,
    })
}

/// Refuses a header whose `shape` numbers multiply past what a file could hold, before npyz
/// multiplies them (which overflows).
fn check_shape_fits(bytes: &[u8]) -> Result<(), String> {
    let end = bytes.len().min(1 << 16);
    let text = String::from_utf8_lossy(&bytes[..end]);
    let Some(tuple) = text
        .find("'shape'")
        .and_then(|at| text[at..].find('(').map(|open| at + open + 1))
        .and_then(|start| text[start..].find(')').map(|close| &text[start..start + close]))
    else {
        return Ok(());
    };
    // The reader multiplies every prefix of the shape (its strides), so a zero-sized axis does
    // not make the others safe: the product of the non-zero sizes must fit.
    let mut total: u64 = 1;
    for part in tuple.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let size: u64 = part
            .parse()
            .map_err(|_| format!("not a valid .npy file: shape entry `{part}`"))?;
        total = total
            .checked_mul(size.max(1))
            .filter(|&t| t <= isize::MAX as u64 / 8)
            .ok_or_else(|| format!("shape ({tuple}) is too large for any file"))?;
    }
    Ok(())
}

fn header(path: &Path, name: &str, bytes: &[u8], file: usize) -> Result<TensorInfo, CacheError> {
    let bad = |message: String| CacheError::tensor(path, name, message);
    check_shape_fits(bytes).map_err(bad)?;
    let mut reader = std::io::Cursor::new(bytes);
    let header =
        npyz::NpyHeader::from_reader(&mut reader).map_err(|e| bad(format!("not a valid .npy file: {e}")))?;
    if header.order() == npyz::Order::Fortran {
        return Err(bad("is stored in Fortran order; save it C-contiguous".into()));
    }
    let descr = header.dtype().descr().trim_matches('\'').to_string();
    let dtype = match descr.as_str() {
        "<f4" => Dtype::F32,
        "<f2" => Dtype::F16,
        "<f8" => Dtype::F64,
        "<i8" => Dtype::I64,
        "<i4" => Dtype::I32,
        "|u1" => Dtype::U8,
        "|b1" => Dtype::Bool,
        other => {
            return Err(bad(format!(
                "has dtype `{other}`; camc reads <f4, <f2, <f8, <i8, <i4, |u1"
            )))
        }
    };
    let shape: Vec<usize> = header.shape().iter().map(|&s| s as usize).collect();
    let start = reader.position() as usize;
    let len = shape
        .iter()
        .try_fold(dtype.size(), |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| bad(format!("shape {shape:?} is too large")))?;
    let end = start
        .checked_add(len)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            bad(format!(
                "shape {shape:?} needs {len} bytes of data but the file has {}: truncated",
                bytes.len().saturating_sub(start)
            ))
        })?;
    Ok(TensorInfo {
        dtype,
        shape,
        file,
        range: start..end,
    })
}

fn metadata(dir: &Path) -> Result<BTreeMap<String, String>, CacheError> {
    let path = dir.join("meta.json");
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(BTreeMap::new());
    }
    let bytes = super::read_small(&path, 1 << 20)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        CacheError::file(
            &path,
            format!("is not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CacheError::file(&path, format!("is not valid JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| CacheError::file(&path, "must be a JSON object of metadata"))?;
    Ok(object
        .iter()
        .map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) => {
                    items.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
                }
                other => other.to_string(),
            };
            (key.clone(), text)
        })
        .collect())
}

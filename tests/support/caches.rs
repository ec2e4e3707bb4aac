//! Writing small caches for tests: safetensors files and `.npy` directories.

use npyz::WriterBuilder;
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// A tensor to write: dtype, shape and little-endian bytes.
pub struct T {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

pub fn f32s(shape: &[usize], values: &[f32]) -> T {
    assert_eq!(
        shape.iter().product::<usize>(),
        values.len(),
        "shape and values agree"
    );
    T {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

pub fn f16s(shape: &[usize], values: &[f32]) -> T {
    T {
        dtype: Dtype::F16,
        shape: shape.to_vec(),
        bytes: values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

pub fn bf16s(shape: &[usize], values: &[f32]) -> T {
    T {
        dtype: Dtype::BF16,
        shape: shape.to_vec(),
        bytes: values
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
    }
}

pub fn i64s(shape: &[usize], values: &[i64]) -> T {
    T {
        dtype: Dtype::I64,
        shape: shape.to_vec(),
        bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Writes a safetensors file with `tensors` and string metadata.
pub fn write_safetensors(path: &Path, tensors: &[(&str, T)], metadata: &[(&str, &str)]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(name, t)| {
            let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).expect("consistent tensor");
            (name.to_string(), view)
        })
        .collect();
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let meta = if meta.is_empty() { None } else { Some(meta) };
    let bytes = safetensors::serialize(views, meta).expect("serializes");
    std::fs::write(path, bytes).expect("write cache");
}

/// Writes `NAME.npy` for each f32 tensor into `dir`.
pub fn write_npy_dir(dir: &Path, tensors: &[(&str, &[usize], &[f32])]) {
    std::fs::create_dir_all(dir).expect("npy dir");
    for (name, shape, values) in tensors {
        let path = dir.join(format!("{name}.npy"));
        let file = std::fs::File::create(&path).expect("create npy");
        let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
        let mut writer = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&shape)
            .writer(file)
            .begin_nd()
            .expect("npy header");
        writer.extend(values.iter().copied()).expect("npy data");
        writer.finish().expect("npy finish");
    }
}

/// Reads a `.npy` file of f32 written by camc: its shape and values.
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).expect("read npy");
    let file = npyz::NpyFile::new(&bytes[..]).expect("valid npy");
    let shape = file.shape().iter().map(|&s| s as usize).collect();
    (shape, file.into_vec::<f32>().expect("f32 data"))
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn noise(seed: u64, len: usize) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

//! Element types of cache tensors, and reading their bytes as values.

use crate::exec::Data;
use half::{bf16, f16};
use std::borrow::Cow;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    Bf16,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::Bf16 => 2,
            DType::U8 | DType::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::Bf16 | DType::F64)
    }
}

/// Values read from a cache: borrowed from the mapped file when aligned, copied otherwise.
/// Program inputs are f32, f16 or bf16; any other type is converted to f32.
pub enum Values<'a> {
    F32(Cow<'a, [f32]>),
    F16(Cow<'a, [f16]>),
    Bf16(Cow<'a, [bf16]>),
}

fn cast<T: bytemuck::Pod>(bytes: &[u8]) -> Cow<'_, [T]> {
    match bytemuck::try_cast_slice(bytes) {
        Ok(values) => Cow::Borrowed(values),
        Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(bytes)),
    }
}

impl<'a> Values<'a> {
    /// Little-endian `bytes` of `dtype`; the length must be a multiple of the element size.
    pub fn from_bytes(dtype: DType, bytes: &'a [u8]) -> Result<Values<'a>, String> {
        if !bytes.len().is_multiple_of(dtype.size()) {
            return Err(format!(
                "{} bytes is not a whole number of {} values",
                bytes.len(),
                dtype.name()
            ));
        }
        let converted =
            |f: fn(&[u8]) -> f32| Values::F32(Cow::Owned(bytes.chunks_exact(dtype.size()).map(f).collect()));
        Ok(match dtype {
            DType::F32 => Values::F32(cast(bytes)),
            DType::F16 => Values::F16(cast(bytes)),
            DType::Bf16 => Values::Bf16(cast(bytes)),
            DType::F64 => converted(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
            DType::I64 => converted(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
            DType::I32 => converted(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32),
            DType::U8 | DType::Bool => converted(|b| b[0] as f32),
        })
    }

    pub fn data(&self) -> Data<'_> {
        match self {
            Values::F32(v) => Data::F32(v),
            Values::F16(v) => Data::F16(v),
            Values::Bf16(v) => Data::Bf16(v),
        }
    }

    pub fn to_f32(&self) -> Cow<'_, [f32]> {
        self.data().to_f32()
    }
}

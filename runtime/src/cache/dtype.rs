//! Reading the bytes of cache tensors as values.

use crate::batch::Data;
use camc_compiler::dtype::Dtype;
use half::{bf16, f16};
use std::borrow::Cow;

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
    pub fn from_bytes(dtype: Dtype, bytes: &'a [u8]) -> Result<Values<'a>, String> {
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
            Dtype::F32 => Values::F32(cast(bytes)),
            Dtype::F16 => Values::F16(cast(bytes)),
            Dtype::Bf16 => Values::Bf16(cast(bytes)),
            Dtype::F64 => converted(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
            Dtype::I64 => converted(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
            Dtype::I32 => converted(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32),
            Dtype::U8 | Dtype::Bool => converted(|b| b[0] as f32),
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

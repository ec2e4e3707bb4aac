//! Element types of tensors.

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
/// How values are stored, in a cache file or in memory. Programs compute in f32 whatever the
/// storage; kernel inputs are f32, f16, bf16, i64 or i32 ([`Dtype::is_input`]), other types are
/// converted to f32 when read.
pub enum Dtype {
    F32,
    F16,
    Bf16,
    F64,
    I64,
    I32,
    U8,
    Bool,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::U8 | Dtype::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
            Dtype::F64 => "f64",
            Dtype::I64 => "i64",
            Dtype::I32 => "i32",
            Dtype::U8 => "u8",
            Dtype::Bool => "bool",
        }
    }

    /// Whether a kernel reads inputs of this type as they are stored (no conversion on the host).
    pub fn is_input(self) -> bool {
        matches!(
            self,
            Dtype::F32 | Dtype::F16 | Dtype::Bf16 | Dtype::I64 | Dtype::I32
        )
    }

    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F32 | Dtype::F16 | Dtype::Bf16 | Dtype::F64)
    }
}

//! The tensors a call gives: NumPy arrays in host memory (bf16 arrives as its `uint16` bits,
//! from torch), or `(address, dtype, shape)` of GPU memory; their shapes give the axis sizes.

use camc_compiler::axes::Axis;
use camc_compiler::dims::Dims;
use camc_compiler::dtype::Dtype;
use camc_compiler::ir::{Input, InputKind, Kernel};
use camc_runtime::batch::Data;
use half::slice::HalfBitsSliceExt;
use numpy::{PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

/// One host tensor as the caller gave it.
pub enum Host<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F16(PyReadonlyArrayDyn<'py, half::f16>),
    /// bf16 values as their bits (NumPy has no bf16).
    Bf16(PyReadonlyArrayDyn<'py, u16>),
    I64(PyReadonlyArrayDyn<'py, i64>),
    I32(PyReadonlyArrayDyn<'py, i32>),
}

impl<'py> Host<'py> {
    /// The array `value`, read as bf16 bits when `bf16`; `None` for anything else.
    pub fn extract(value: &Bound<'py, PyAny>, bf16: bool) -> Option<Host<'py>> {
        if bf16 {
            return value.extract().ok().map(Host::Bf16);
        }
        if let Ok(a) = value.extract() {
            Some(Host::F32(a))
        } else if let Ok(a) = value.extract() {
            Some(Host::F16(a))
        } else if let Ok(a) = value.extract() {
            Some(Host::I64(a))
        } else {
            value.extract().ok().map(Host::I32)
        }
    }

    pub fn shape(&self) -> Vec<usize> {
        match self {
            Host::F32(a) => a.shape().to_vec(),
            Host::F16(a) => a.shape().to_vec(),
            Host::Bf16(a) => a.shape().to_vec(),
            Host::I64(a) => a.shape().to_vec(),
            Host::I32(a) => a.shape().to_vec(),
        }
    }

    /// The values, borrowed: C order only (`as_slice` also accepts Fortran order, whose
    /// values are not in the order camc reads).
    pub fn data(&self) -> Result<Data<'_>, String> {
        let c_order = match self {
            Host::F32(a) => a.is_c_contiguous(),
            Host::F16(a) => a.is_c_contiguous(),
            Host::Bf16(a) => a.is_c_contiguous(),
            Host::I64(a) => a.is_c_contiguous(),
            Host::I32(a) => a.is_c_contiguous(),
        };
        let not_contiguous =
            || "is not contiguous; pass np.ascontiguousarray(x) or x.contiguous()".to_string();
        if !c_order {
            return Err(not_contiguous());
        }
        let slice = match self {
            Host::F32(a) => a.as_slice().map(Data::F32),
            Host::F16(a) => a.as_slice().map(Data::F16),
            Host::Bf16(a) => a.as_slice().map(|bits| Data::Bf16(bits.reinterpret_cast())),
            Host::I64(a) => a.as_slice().map(Data::I64),
            Host::I32(a) => a.as_slice().map(Data::I32),
        };
        slice.map_err(|_| not_contiguous())
    }
}

/// A dtype's name as NumPy and torch spell it.
pub fn dtype_named(name: &str) -> Option<Dtype> {
    match name {
        "float32" => Some(Dtype::F32),
        "float16" => Some(Dtype::F16),
        "bfloat16" => Some(Dtype::Bf16),
        "int64" => Some(Dtype::I64),
        "int32" => Some(Dtype::I32),
        _ => None,
    }
}

/// The shape `input` must have: `[n, its axes...]` per image, its axes when shared.
fn expected_shape(input: &Input) -> String {
    let axes: Vec<&str> = Axis::ALL
        .into_iter()
        .filter(|a| input.ty.contains(*a))
        .map(|a| a.name())
        .collect();
    match input.kind {
        InputKind::PerImage => format!("[n{}{}]", if axes.is_empty() { "" } else { "," }, axes.join(",")),
        InputKind::Shared => format!("[{}]", axes.join(",")),
    }
}

/// The number of images and the axis sizes the inputs give (`shapes[j]` is input `j`'s),
/// checking that they agree.
pub fn sizes_of(kernel: &Kernel, shapes: &[Vec<usize>]) -> Result<(usize, Dims), String> {
    let mut n: Option<(usize, &str)> = None;
    let mut sizes: Vec<(Axis, usize, &str)> = Vec::new();
    for (input, shape) in kernel.inputs.iter().zip(shapes) {
        let axes: Vec<Axis> = Axis::ALL.into_iter().filter(|a| input.ty.contains(*a)).collect();
        let lead = usize::from(input.kind == InputKind::PerImage);
        if shape.len() != lead + axes.len() {
            return Err(format!(
                "`{}` has shape {shape:?}; the program reads `{}: {}`, so it must be {} ({} axes{})",
                input.name,
                input.name,
                input.ty,
                expected_shape(input),
                lead + axes.len(),
                if lead == 1 {
                    ", the first one the images"
                } else {
                    ""
                }
            ));
        }
        if lead == 1 {
            match n {
                Some((images, other)) if images != shape[0] => {
                    return Err(format!(
                        "`{}` holds {} images, `{other}` {images}",
                        input.name, shape[0]
                    ))
                }
                None => n = Some((shape[0], &input.name)),
                _ => {}
            }
        }
        for (&axis, &size) in axes.iter().zip(&shape[lead..]) {
            match sizes.iter().find(|(a, _, _)| *a == axis) {
                Some(&(_, other, name)) if other != size => {
                    return Err(format!(
                        "`{}` has {} = {size}, `{name}` has {} = {other}",
                        input.name,
                        axis.name(),
                        axis.name()
                    ))
                }
                Some(_) => {}
                None => sizes.push((axis, size, &input.name)),
            }
            if size == 0 {
                return Err(format!("`{}` has {} = 0", input.name, axis.name()));
            }
        }
    }
    let size = |axis| {
        sizes
            .iter()
            .find(|(a, _, _)| *a == axis)
            .map_or(1, |&(_, s, _)| s)
    };
    let dims =
        Dims::new(size(Axis::K), size(Axis::D), size(Axis::H), size(Axis::W)).with_classes(size(Axis::C));
    let n = n.map_or(1, |(n, _)| n);
    Ok((n, dims))
}

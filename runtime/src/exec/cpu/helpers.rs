//! Functions the JIT-compiled code calls, linked by name: the scalar libm functions (through
//! Rust's `f32` methods, so they are the very functions the interpreter calls) and
//! `camc_helper`, which computes `std`, `softmax`, `normalize`, `pc1`, `index` and `size`
//! with the interpreter's own code (in f64), on a tensor the kernel has materialized.

use crate::interp;
use camc_compiler::axes::AxisSet;
use camc_compiler::codegen::clif::{axes_from_bits, HelperOp, HELPER, LIBM};
use camc_compiler::dims::Dims;
use camc_compiler::ops::ReduceOp;

extern "C" fn expf(x: f32) -> f32 {
    x.exp()
}

extern "C" fn logf(x: f32) -> f32 {
    x.ln()
}

extern "C" fn powf(x: f32, y: f32) -> f32 {
    x.powf(y)
}

extern "C" fn tanhf(x: f32) -> f32 {
    x.tanh()
}

/// Every symbol the lowered code may import, with its address.
pub fn symbols() -> Vec<(&'static str, *const u8)> {
    let libm: [*const u8; 4] = [
        expf as *const u8,
        logf as *const u8,
        powf as *const u8,
        tanhf as *const u8,
    ];
    let mut all: Vec<(&'static str, *const u8)> = LIBM.into_iter().zip(libm).collect();
    all.push((HELPER, camc_helper as *const u8));
    all
}

fn op_from(code: i64) -> Option<HelperOp> {
    [
        HelperOp::Std,
        HelperOp::Softmax,
        HelperOp::Normalize,
        HelperOp::Pc1,
        HelperOp::Index,
        HelperOp::Size,
    ]
    .into_iter()
    .find(|op| *op as i64 == code)
}

/// The number of values the helper writes.
fn result_len(op: HelperOp, dims: Dims, ty: AxisSet, axes: AxisSet) -> usize {
    match op {
        HelperOp::Softmax | HelperOp::Normalize | HelperOp::Index => dims.len(ty),
        HelperOp::Std | HelperOp::Pc1 => dims.len(ty.minus(axes)),
        HelperOp::Size => 1,
    }
}

fn compute(op: HelperOp, dims: Dims, ty: AxisSet, axes: AxisSet, x: &[f32]) -> Vec<f32> {
    let axis = axes.iter().next();
    match op {
        HelperOp::Index => axis.map_or_else(Vec::new, |a| interp::index(dims, a)),
        HelperOp::Size => vec![interp::size(dims, axes)],
        HelperOp::Std => interp::reduce(dims, ty, axes, x, ReduceOp::Std),
        HelperOp::Softmax => interp::groupwise(dims, ty, axes, x, interp::softmax),
        HelperOp::Normalize => interp::groupwise(dims, ty, axes, x, interp::normalize),
        HelperOp::Pc1 => match axis {
            Some(axis) => interp::project(dims, ty, axis, x),
            None => vec![f32::NAN; dims.len(ty)],
        },
    }
}

/// `camc_helper(x, out, op, ty, axes, c, k, d, h, w)` (see `camc_compiler::codegen::clif::HELPER`).
///
/// # Safety
/// `x` holds `dims.len(ty)` f32 values and `out` room for the result, as the kernel's plan
/// allocates them.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn camc_helper(
    x: *const f32,
    out: *mut f32,
    op: i64,
    ty: i64,
    axes: i64,
    c: i64,
    k: i64,
    d: i64,
    h: i64,
    w: i64,
) {
    let Some(op) = op_from(op) else { return };
    let dims = Dims::new(k as usize, d as usize, h as usize, w as usize).with_classes(c as usize);
    let (ty, axes) = (axes_from_bits(ty as u8), axes_from_bits(axes as u8));
    let len = result_len(op, dims, ty, axes);
    // SAFETY: the caller's contract above.
    let (x, out) = unsafe {
        (
            std::slice::from_raw_parts(x, dims.len(ty)),
            std::slice::from_raw_parts_mut(out, len),
        )
    };
    // A panic must not unwind into JIT code; it would be a bug, shown as NaN results.
    match std::panic::catch_unwind(|| compute(op, dims, ty, axes, x)) {
        Ok(values) if values.len() == len => out.copy_from_slice(&values),
        _ => out.fill(f32::NAN),
    }
}

//! Functions the JIT-compiled code calls, linked by name: the scalar libm functions (through
//! Rust's `f32` methods, so they are the very functions the interpreter calls) and
//! `camc_helper`, which computes `std`, `softmax`, `normalize`, `pc1`, `index` and `size`
//! with the interpreter's own code (in f64), on a tensor the kernel has materialized, and
//! `camc_contract`, the matrix product of a contraction (`matrixmultiply`'s blocked `sgemm`).

use crate::interp;
use camc_compiler::axes::AxisSet;
use camc_compiler::codegen::clif::{axes_from_bits, HelperOp, CONTRACT, HELPER, LIBM};
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
    all.push((CONTRACT, camc_contract as *const u8));
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

/// `camc_contract(a, b, c, m, n, k, rs_a, cs_a, rs_b, cs_b, rs_c, cs_c)` (see
/// `camc_compiler::codegen::clif::CONTRACT`): `c = a · b`, overwriting `c`. The product is a
/// `dgemm` on f64 copies: every other sum of the CPU backend and the interpreter accumulates in
/// f64, and an f32 GEMM misses 1e-5 where a sum cancels (signed weights).
///
/// # Safety
/// The three matrices lie in buffers of the kernel's plan that hold every element the sizes and
/// strides reach (the compiler derives them from the operands' layouts); `c` does not overlap
/// `a` or `b`.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn camc_contract(
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    m: i64,
    n: i64,
    k: i64,
    rs_a: i64,
    cs_a: i64,
    rs_b: i64,
    cs_b: i64,
    rs_c: i64,
    cs_c: i64,
) {
    let (m, n, k) = (m as usize, n as usize, k as usize);
    // The elements a matrix's strides reach: the whole operand (its axes are the matrix's).
    let extent =
        |rows: usize, cols: usize, rs: i64, cs: i64| (rows - 1) * rs as usize + (cols - 1) * cs as usize + 1;
    let (len_a, len_b, len_c) = (
        extent(m, k, rs_a, cs_a),
        extent(k, n, rs_b, cs_b),
        extent(m, n, rs_c, cs_c),
    );
    // SAFETY: the caller's contract above.
    let (a, b, c) = unsafe {
        (
            std::slice::from_raw_parts(a, len_a),
            std::slice::from_raw_parts(b, len_b),
            std::slice::from_raw_parts_mut(c, len_c),
        )
    };
    WIDE.with_borrow_mut(|(wa, wb, wc)| {
        wa.clear();
        wa.extend(a.iter().map(|&v| v as f64));
        wb.clear();
        wb.extend(b.iter().map(|&v| v as f64));
        wc.clear();
        wc.resize(len_c, 0.0);
        // SAFETY: the f64 copies have the f32 buffers' layouts; beta = 0 writes `wc` only.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                wa.as_ptr(),
                rs_a as isize,
                cs_a as isize,
                wb.as_ptr(),
                rs_b as isize,
                cs_b as isize,
                0.0,
                wc.as_mut_ptr(),
                rs_c as isize,
                cs_c as isize,
            )
        }
        for (out, &v) in c.iter_mut().zip(wc.iter()) {
            *out = v as f32;
        }
    });
}

type Wide = (Vec<f64>, Vec<f64>, Vec<f64>);

thread_local! {
    /// f64 copies of a contraction's operands and result, kept per thread between images.
    static WIDE: std::cell::RefCell<Wide> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new(), Vec::new()))
    };
}

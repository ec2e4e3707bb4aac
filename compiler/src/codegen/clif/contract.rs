//! Contractions: a `sum` over axes `R` of the product of two tensors that share exactly `R`, each
//! with axes of its own (`sum[k](head_weight * A)`: `[c,k]` times `[k,h,w]` to `[c,h,w]`). That is
//! a matrix product, and a loop nest that recomputes it one output element at a time runs an
//! order of magnitude below a blocked GEMM: such a reduction becomes a call to the runtime's
//! `camc_contract` (see [`super::CONTRACT`]), a strided `sgemm`.
//!
//! Only true matrix products qualify (each operand has an axis the other lacks, every shared axis
//! is summed): a weighted sum over channels (`sum[k](w * A)` with `w: [k]`) is a matrix-vector
//! product that the fused loop already streams at memory speed. The GEMM accumulates in f32
//! where the loop nests accumulate sums in f64; docs/backends.md states the difference.

use crate::axes::{Axis, AxisSet};
use crate::dims::Dims;
use crate::ir::{Kernel, NodeId, Op};
use crate::ops::{BinaryOp, ReduceOp};

/// `c[i·rs_c + j·cs_c] = Σ_l a[i·rs_a + l·cs_a] · b[l·rs_b + j·cs_b]` for `i < m`, `j < n`,
/// `l < k` (strides in elements), as `matrixmultiply::sgemm` takes it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: [usize; 2],
    pub b: [usize; 2],
    pub c: [usize; 2],
}

impl Gemm {
    /// The helper's integer arguments after the three pointers, in its order.
    pub fn arguments(&self) -> [i64; 9] {
        [
            self.m, self.n, self.k, self.a[0], self.a[1], self.b[0], self.b[1], self.c[0], self.c[1],
        ]
        .map(|v| v as i64)
    }
}

/// The stride that walks the axes `group` of a `ty` tensor as one flattened index, when their
/// layout allows it (each axis's stride is the next one's stride times its size; axes of size 1
/// are free), with the group's size.
fn flattened(sizes: Dims, ty: AxisSet, group: AxisSet) -> Option<(usize, usize)> {
    let strides = sizes.strides(ty);
    let axes: Vec<Axis> = group.iter().filter(|&a| sizes.size(a) > 1).collect();
    for pair in axes.windows(2) {
        let (outer, inner) = (pair[0] as usize, pair[1] as usize);
        if strides[outer] != strides[inner] * sizes.size(pair[1]) {
            return None;
        }
    }
    let stride = axes.last().map_or(1, |&a| strides[a as usize]);
    Some((stride, sizes.len(group)))
}

/// The operands `(a, b)` and the GEMM of `node` when it is a contraction (see the module docs).
pub fn contraction(kernel: &Kernel, node: NodeId, sizes: Dims) -> Option<(NodeId, NodeId, Gemm)> {
    let Op::Reduce(ReduceOp::Sum, summed, x) = kernel.node(node).op else {
        return None;
    };
    let Op::Binary(BinaryOp::Mul, a, b) = kernel.node(x).op else {
        return None;
    };
    let (ty_a, ty_b) = (kernel.node(a).ty, kernel.node(b).ty);
    let (rows, cols) = (ty_a.minus(summed), ty_b.minus(summed));
    // Every summed axis in both operands, and no other axis in both (that would be a batch of
    // matrix products).
    let both_sum = ty_a.minus(rows) == summed && ty_b.minus(cols) == summed;
    if !both_sum || rows.minus(cols) != rows {
        return None;
    }
    if sizes.len(rows) < 2 || sizes.len(cols) < 2 {
        return None;
    }
    let out = kernel.node(node).ty;
    let (rs_a, m) = flattened(sizes, ty_a, rows)?;
    let (cs_a, k) = flattened(sizes, ty_a, summed)?;
    let (rs_b, _) = flattened(sizes, ty_b, summed)?;
    let (cs_b, n) = flattened(sizes, ty_b, cols)?;
    let (rs_c, _) = flattened(sizes, out, rows)?;
    let (cs_c, _) = flattened(sizes, out, cols)?;
    let gemm = Gemm {
        m,
        n,
        k,
        a: [rs_a, cs_a],
        b: [rs_b, cs_b],
        c: [rs_c, cs_c],
    };
    Some((a, b, gemm))
}

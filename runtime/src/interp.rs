//! The reference interpreter: evaluates a kernel's IR for one image, node by node, each node
//! over its whole type. It is the oracle every backend is tested against, so it favours
//! clarity over speed, and accumulates reductions in f64. It runs in f32 (the language's
//! type, [`eval`]) or in f64 ([`eval_f64`]: the reference that finite differences of gradients
//! are taken on).

use crate::pc1::pc1;
use camc_compiler::axes::{Axis, AxisSet};
use camc_compiler::dims::{offset, Dims};
use camc_compiler::ir::{Kernel, Op};
use camc_compiler::ops::{Real, ReduceOp, NORMALIZE_EPS};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpError {
    #[error("kernel `{kernel}` takes {expected} inputs, got {got}")]
    InputCount {
        kernel: String,
        expected: usize,
        got: usize,
    },
    #[error("input `{name}` {ty} should hold {expected} values per image for {dims:?}, got {got}")]
    InputLength {
        name: String,
        ty: AxisSet,
        expected: usize,
        got: usize,
        dims: Dims,
    },
}

/// The kernel's output for one image; `inputs[i]` is input `i` of that image.
pub fn eval(kernel: &Kernel, dims: Dims, inputs: &[&[f32]]) -> Result<Vec<f32>, InterpError> {
    eval_as(kernel, dims, inputs)
}

/// [`eval`] with every value in f64 (constants widened from their f32): for finite-difference
/// checks of gradients, where f32 rounding would swamp the differences.
pub fn eval_f64(kernel: &Kernel, dims: Dims, inputs: &[&[f64]]) -> Result<Vec<f64>, InterpError> {
    eval_as(kernel, dims, inputs)
}

fn eval_as<T: Real>(kernel: &Kernel, dims: Dims, inputs: &[&[T]]) -> Result<Vec<T>, InterpError> {
    if inputs.len() != kernel.inputs.len() {
        return Err(InterpError::InputCount {
            kernel: kernel.name.clone(),
            expected: kernel.inputs.len(),
            got: inputs.len(),
        });
    }
    for (input, data) in kernel.inputs.iter().zip(inputs) {
        if data.len() != dims.len(input.ty) {
            return Err(InterpError::InputLength {
                name: input.name.clone(),
                ty: input.ty,
                expected: dims.len(input.ty),
                got: data.len(),
                dims,
            });
        }
    }
    let mut values: Vec<Vec<T>> = Vec::with_capacity(kernel.nodes.len());
    for node in &kernel.nodes {
        let ty = node.ty;
        let value = match node.op {
            Op::Input(i) => inputs[i as usize].to_vec(),
            Op::Const(v) => vec![T::from_f64(v as f64)],
            Op::Unary(f, x) => values[x.index()].iter().map(|&v| f.eval(v)).collect(),
            Op::Binary(f, a, b) => {
                let (ta, tb) = (kernel.node(a).ty, kernel.node(b).ty);
                let (va, vb) = (&values[a.index()], &values[b.index()]);
                elementwise(dims, ty, &[ta, tb], |at| f.eval(va[at[0]], vb[at[1]]))
            }
            Op::Select(c, a, b) => {
                let types = [kernel.node(c).ty, kernel.node(a).ty, kernel.node(b).ty];
                let (vc, va, vb) = (&values[c.index()], &values[a.index()], &values[b.index()]);
                elementwise(dims, ty, &types, |at| {
                    if vc[at[0]] != T::ZERO {
                        va[at[1]]
                    } else {
                        vb[at[2]]
                    }
                })
            }
            Op::Reduce(f, axes, x) => reduce(dims, kernel.node(x).ty, axes, &values[x.index()], f),
            Op::Softmax(axes, x) => groupwise(dims, ty, axes, &values[x.index()], softmax),
            Op::Normalize(axes, x) => groupwise(dims, ty, axes, &values[x.index()], normalize),
            Op::Pc1(axis, x) => project(dims, kernel.node(x).ty, axis, &values[x.index()]),
            Op::Index(axis) => index(dims, axis),
            Op::Size(axes) => vec![size(dims, axes)],
        };
        values.push(value);
    }
    Ok(values.swap_remove(kernel.output.index()))
}

/// `f` at every index of `ty`, given the offsets of that index in operands of `types`.
fn elementwise<T, const N: usize>(
    dims: Dims,
    ty: AxisSet,
    types: &[AxisSet; N],
    f: impl Fn([usize; N]) -> T,
) -> Vec<T> {
    let strides = types.map(|t| dims.strides(t));
    dims.indices(ty)
        .map(|index| f(strides.map(|s| offset(&s, &index))))
        .collect()
}

/// The values of `x` (typed `ty`) grouped by their index outside `axes`: one group per element
/// of `ty − axes`, in that type's layout order.
fn groups<T: Real>(dims: Dims, ty: AxisSet, axes: AxisSet, x: &[T]) -> Vec<Vec<f64>> {
    if let Some(group_len) = contiguous_groups(dims, ty, axes) {
        return x
            .chunks_exact(group_len)
            .map(|group| group.iter().map(|&v| v.to_f64()).collect())
            .collect();
    }
    let kept = ty.minus(axes);
    let kept_strides = dims.strides(kept);
    let mut groups = vec![Vec::new(); dims.len(kept)];
    for (flat, index) in dims.indices(ty).enumerate() {
        groups[offset(&kept_strides, &index)].push(x[flat].to_f64());
    }
    groups
}

/// The length of each group when the groups over `axes` are contiguous runs of `x`, in order
/// (`[h,w]` of `[k,h,w]`: every reduced axis comes after every kept one in layout order).
fn contiguous_groups(dims: Dims, ty: AxisSet, axes: AxisSet) -> Option<usize> {
    let kept = ty.minus(axes);
    let mut reduced_seen = false;
    for axis in ty.iter() {
        if kept.contains(axis) && reduced_seen {
            return None;
        }
        reduced_seen |= !kept.contains(axis);
    }
    let group_len = dims.len(ty.minus(kept));
    (group_len > 0).then_some(group_len)
}

pub(crate) fn reduce<T: Real>(dims: Dims, ty: AxisSet, axes: AxisSet, x: &[T], f: ReduceOp) -> Vec<T> {
    if let Some(group_len) = contiguous_groups(dims, ty, axes) {
        // Each group widened into one reused buffer.
        let mut group = Vec::with_capacity(group_len);
        return x
            .chunks_exact(group_len)
            .map(|values| {
                group.clear();
                group.extend(values.iter().map(|&v| v.to_f64()));
                T::from_f64(reduce_wide(&group, f))
            })
            .collect();
    }
    groups(dims, ty, axes, x)
        .iter()
        .map(|g| T::from_f64(reduce_wide(g, f)))
        .collect()
}

/// One group's reduction, accumulated in f64: the one definition of the language's reductions
/// on the host (the interpreter, and the search's probe images).
pub fn reduce_group(g: &[f64], f: ReduceOp) -> f32 {
    reduce_wide(g, f) as f32
}

/// [`reduce_group`] before its rounding to f32.
fn reduce_wide(g: &[f64], f: ReduceOp) -> f64 {
    let n = g.len() as f64;
    // Only the reductions that need it pay for the (sequential) sum.
    let sum = || g.iter().sum::<f64>();
    let value = match f {
        ReduceOp::Sum => sum(),
        ReduceOp::Mean => sum() / n,
        ReduceOp::Max => extreme(g, f64::max),
        ReduceOp::Min => extreme(g, f64::min),
        ReduceOp::Norm => g.iter().map(|v| v * v).sum::<f64>().sqrt(),
        ReduceOp::Std => {
            let mean = sum() / n;
            (g.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt()
        }
    };
    value
}

/// Max or min that propagates NaN, as numpy's `max`/`min` do.
fn extreme(g: &[f64], pick: impl Fn(f64, f64) -> f64) -> f64 {
    if g.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    g.iter().copied().reduce(pick).unwrap_or(f64::NAN)
}

/// Applies a shape-keeping function to each group of `x` over `axes`, writing results back in
/// `ty`'s layout.
pub(crate) fn groupwise<T: Real>(
    dims: Dims,
    ty: AxisSet,
    axes: AxisSet,
    x: &[T],
    f: fn(&[f64]) -> Vec<f64>,
) -> Vec<T> {
    let done: Vec<Vec<f64>> = groups(dims, ty, axes, x).iter().map(|g| f(g)).collect();
    if contiguous_groups(dims, ty, axes).is_some() {
        return done.into_iter().flatten().map(T::from_f64).collect();
    }
    let kept_strides = dims.strides(ty.minus(axes));
    let mut taken = vec![0usize; done.len()];
    dims.indices(ty)
        .map(|index| {
            let group = offset(&kept_strides, &index);
            let value = done[group][taken[group]];
            taken[group] += 1;
            T::from_f64(value)
        })
        .collect()
}

pub(crate) fn softmax(g: &[f64]) -> Vec<f64> {
    let max = extreme(g, f64::max);
    let exps: Vec<f64> = g.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

pub(crate) fn normalize(g: &[f64]) -> Vec<f64> {
    let (min, max) = (extreme(g, f64::min), extreme(g, f64::max));
    g.iter()
        .map(|v| (v - min) / (max - min + NORMALIZE_EPS as f64))
        .collect()
}

/// The positions along `axis`: `0, 1, ..., size - 1`.
pub(crate) fn index<T: Real>(dims: Dims, axis: Axis) -> Vec<T> {
    (0..dims.size(axis)).map(|i| T::from_f64(i as f64)).collect()
}

/// The number of elements over `axes`, as the f32 nearest to it.
pub(crate) fn size<T: Real>(dims: Dims, axes: AxisSet) -> T {
    T::from_f64(dims.len(axes) as f32 as f64)
}

/// `pc1[axis](x)`: rows are the positions (every other axis), columns the `axis` features.
pub(crate) fn project<T: Real>(dims: Dims, ty: AxisSet, axis: Axis, x: &[T]) -> Vec<T> {
    let positions = ty.minus(AxisSet::SCALAR.with(axis));
    let rows = dims.len(positions);
    let cols = dims.size(axis);
    let leading = Axis::ALL.into_iter().find(|a| ty.contains(*a)) == Some(axis);
    // pc1 takes each feature's values together: when `axis` leads, `x` is laid out so already.
    let matrix: Vec<f64> = if leading {
        x.iter().map(|&v| v.to_f64()).collect()
    } else {
        let mut matrix = vec![0.0f64; rows * cols];
        let position_strides = dims.strides(positions);
        let axis_slot = Axis::ALL
            .iter()
            .position(|a| *a == axis)
            .expect("axis is one of ALL");
        for (flat, index) in dims.indices(ty).enumerate() {
            let row = offset(&position_strides, &index);
            matrix[index[axis_slot] * rows + row] = x[flat].to_f64();
        }
        matrix
    };
    // pc1 in f32 as every backend computes it (its result is rounded to f32 even in f64).
    pc1(matrix, rows, cols)
        .into_iter()
        .map(|v| T::from_f64(v as f32 as f64))
        .collect()
}

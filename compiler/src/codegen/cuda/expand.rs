//! Rewrites a kernel into the operations the CUDA writer emits: elementwise operations and
//! reductions. `softmax[axes](x)` becomes `exp(x - max[axes](x)) / sum[axes](exp(x - max[axes](x)))`
//! and `normalize[axes](x)` becomes `(x - min[axes](x)) / (max[axes](x) - min[axes](x) + 1e-7)`,
//! so that both are reductions (kept in scratch memory) plus elementwise work recomputed where it
//! is used. `pc1[axis](x)` keeps a `Pc1` node for the centring and projection (see pc1.rs); the
//! sign is fixed here, as the interpreter's pc1.rs does.

use super::Error;
use crate::axes::{Axis, AxisSet};
use crate::ir::{Builder, Kernel, NodeId, Op};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp, NORMALIZE_EPS};
use crate::span::Span;

/// The kernel with every `Softmax` and `Normalize` expanded; same inputs and output value.
pub fn expand(kernel: &Kernel) -> Result<Kernel, Error> {
    let mut b = Builder::default();
    let mut map: Vec<NodeId> = Vec::with_capacity(kernel.nodes.len());
    for node in &kernel.nodes {
        let span = node.span;
        let id = match node.op {
            Op::Softmax(axes, x) => {
                let x = map[x.index()];
                let kept = node.ty.minus(axes);
                let max = b.push(Op::Reduce(ReduceOp::Max, axes, x), kept, span);
                let shifted = b.push(Op::Binary(BinaryOp::Sub, x, max), node.ty, span);
                let exp = b.push(Op::Unary(UnaryOp::Exp, shifted), node.ty, span);
                let total = b.push(Op::Reduce(ReduceOp::Sum, axes, exp), kept, span);
                b.push(Op::Binary(BinaryOp::Div, exp, total), node.ty, span)
            }
            Op::Normalize(axes, x) => {
                let x = map[x.index()];
                let kept = node.ty.minus(axes);
                let min = b.push(Op::Reduce(ReduceOp::Min, axes, x), kept, span);
                let max = b.push(Op::Reduce(ReduceOp::Max, axes, x), kept, span);
                let above = b.push(Op::Binary(BinaryOp::Sub, x, min), node.ty, span);
                let range = b.push(Op::Binary(BinaryOp::Sub, max, min), kept, span);
                let eps = b.push(Op::Const(NORMALIZE_EPS), AxisSet::SCALAR, span);
                let divisor = b.push(Op::Binary(BinaryOp::Add, range, eps), kept, span);
                b.push(Op::Binary(BinaryOp::Div, above, divisor), node.ty, span)
            }
            Op::Pc1(axis, x) => pc1(&mut b, axis, map[x.index()], kernel.node(x).ty, span),
            op => b.push(op.map_operands(|o| map[o.index()]), node.ty, span),
        };
        map.push(id);
    }
    Ok(Kernel {
        name: kernel.name.clone(),
        inputs: kernel.inputs.clone(),
        nodes: b.nodes,
        output: map[kernel.output.index()],
        role: kernel.role.clone(),
    })
}

/// `pc1[axis](x)`: `p = Pc1(x)` (centred inside the stage, in f64), then `p * (dot < 0 ? -1 : 1)` where `dot`
/// is `p`'s inner product with the centred row sums `sum[axis](x)`.
fn pc1(b: &mut Builder, axis: Axis, x: NodeId, ty: AxisSet, span: Span) -> NodeId {
    let features = AxisSet::SCALAR.with(axis);
    let positions = ty.minus(features);
    let scalar = AxisSet::SCALAR;
    let projection = b.push(Op::Pc1(axis, x), positions, span);
    let sums = b.push(Op::Reduce(ReduceOp::Sum, features, x), positions, span);
    let mean_sum = b.push(Op::Reduce(ReduceOp::Mean, positions, sums), scalar, span);
    let sums = b.push(Op::Binary(BinaryOp::Sub, sums, mean_sum), positions, span);
    let agreement = b.push(Op::Binary(BinaryOp::Mul, projection, sums), positions, span);
    let dot = b.push(Op::Reduce(ReduceOp::Sum, positions, agreement), scalar, span);
    let zero = b.push(Op::Const(0.0), scalar, span);
    let negative = b.push(Op::Binary(BinaryOp::Lt, dot, zero), scalar, span);
    let minus = b.push(Op::Const(-1.0), scalar, span);
    let plus = b.push(Op::Const(1.0), scalar, span);
    let sign = b.push(Op::Select(negative, minus, plus), scalar, span);
    b.push(Op::Binary(BinaryOp::Mul, projection, sign), positions, span)
}

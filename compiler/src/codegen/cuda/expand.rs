//! Rewrites a kernel into the operations the CUDA writer emits: elementwise operations and
//! reductions. `softmax[axes](x)` becomes `exp(x - max[axes](x)) / sum[axes](exp(x - max[axes](x)))`
//! and `normalize[axes](x)` becomes `(x - min[axes](x)) / (max[axes](x) - min[axes](x) + 1e-7)`,
//! so that both are reductions (kept in scratch memory) plus elementwise work recomputed where it
//! is used. `pc1` has no GPU lowering and is rejected.

use super::Error;
use crate::axes::AxisSet;
use crate::ir::{Builder, Kernel, NodeId, Op};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp, NORMALIZE_EPS};

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
            Op::Pc1(axis, _) => {
                return Err(Error::Unsupported {
                    what: format!("pc1[{axis}]"),
                    span,
                })
            }
            op => b.push(op.map_operands(|o| map[o.index()]), node.ty, span),
        };
        map.push(id);
    }
    Ok(Kernel {
        name: kernel.name.clone(),
        inputs: kernel.inputs.clone(),
        nodes: b.nodes,
        output: map[kernel.output.index()],
    })
}

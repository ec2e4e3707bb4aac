//! Algebraic simplifications that are exact in float32: `x*1`, `x/1`, `x+0`, `x-0`, `x^1` are
//! `x`; `x^2` is `x*x`; `relu(relu x)`, `abs(abs x)`, `relu(abs x)`, `sign(sign x)` and `--x`
//! collapse. A simplification applies only when it keeps the node's type (no lost broadcast).

use super::rewrite::{constant, rewrite, Rewrite};

use crate::ir::{Builder, Info, Kernel, Node, NodeId, Op};
use crate::ops::{BinaryOp, UnaryOp};

pub fn run(kernel: &mut Kernel, _: &Info) {
    rewrite(kernel, simplify);
}

fn simplify(b: &mut Builder, node: &Node) -> Rewrite {
    let same_type = |b: &Builder, id: NodeId| b.nodes[id.index()].ty == node.ty;
    let keep_if = |b: &Builder, id: NodeId| {
        if same_type(b, id) {
            Rewrite::Replace(id)
        } else {
            Rewrite::Keep
        }
    };
    match node.op {
        Op::Binary(op, x, y) => {
            let (cx, cy) = (constant(b, x), constant(b, y));
            match (op, cx, cy) {
                (BinaryOp::Mul, _, Some(1.0))
                | (BinaryOp::Div, _, Some(1.0))
                | (BinaryOp::Pow, _, Some(1.0)) => keep_if(b, x),
                (BinaryOp::Add, _, Some(0.0)) | (BinaryOp::Sub, _, Some(0.0)) => keep_if(b, x),
                (BinaryOp::Mul, Some(1.0), _) | (BinaryOp::Add, Some(0.0), _) => keep_if(b, y),
                (BinaryOp::Pow, _, Some(2.0)) => {
                    Rewrite::Replace(b.push(Op::Binary(BinaryOp::Mul, x, x), node.ty, node.span))
                }
                _ => Rewrite::Keep,
            }
        }
        Op::Unary(outer, x) => match (outer, b.nodes[x.index()].op) {
            (UnaryOp::Relu, Op::Unary(UnaryOp::Relu | UnaryOp::Abs, _))
            | (UnaryOp::Abs, Op::Unary(UnaryOp::Abs | UnaryOp::Relu, _))
            | (UnaryOp::Sign, Op::Unary(UnaryOp::Sign, _)) => Rewrite::Replace(x),
            (UnaryOp::Neg, Op::Unary(UnaryOp::Neg, inner)) => Rewrite::Replace(inner),
            _ => Rewrite::Keep,
        },
        _ => Rewrite::Keep,
    }
}

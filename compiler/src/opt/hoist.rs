//! Hoisting out of reductions: a factor that does not vary along the reduced axes is applied
//! once to the reduced value instead of at every position, e.g.
//! `sum[h,w](G*A / (sum[h,w](A) + eps))` becomes `sum[h,w](G*A) / (sum[h,w](A) + eps)`: one
//! division per channel instead of one per pixel. Applies to `sum` and `mean` of a product or a
//! quotient used nowhere else. Exact in real arithmetic, but not for non-finite values: with a
//! divisor of 0, `sum(x/0)` of mixed signs is NaN while `sum(x)/0` is ±inf (and likewise for an
//! infinite factor), so the pass runs only at `Level::Fast`.

use super::rewrite::{rewrite, Rewrite};
use crate::ir::{validate, Builder, Info, Kernel, Node, NodeId, Op};
use crate::ops::{BinaryOp, ReduceOp};

pub fn run(kernel: &mut Kernel, info: &Info) {
    let mut uses = info.uses.clone();
    // Each application may expose another (`sum(a * (b * x))`); programs are small.
    for round in 0..8 {
        if round > 0 {
            // The kernel changed: the validator's table of the new one (a rewrite that broke
            // the IR stops here, and `optimize` reports it).
            match validate(kernel) {
                Ok(info) => uses = info.uses,
                Err(_) => return,
            }
        }
        // Per node of the current arena: is it a reduction of a value used only by it?
        let sole_user: Vec<bool> = kernel
            .nodes
            .iter()
            .map(|n| matches!(n.op, Op::Reduce(_, _, body) if uses[body.index()] == 1))
            .collect();
        let mut changed = false;
        let mut position = 0;
        rewrite(kernel, |b, node| {
            let hoistable = sole_user[position];
            position += 1;
            match hoistable.then(|| hoist(b, node)).flatten() {
                Some(id) => {
                    changed = true;
                    Rewrite::Replace(id)
                }
                None => Rewrite::Keep,
            }
        });
        if !changed {
            break;
        }
    }
}

/// `reduce(factor ⊙ varying)` as `factor ⊙ reduce(varying)`, if `node` has that shape.
fn hoist(b: &mut Builder, node: &Node) -> Option<NodeId> {
    let Op::Reduce(op @ (ReduceOp::Sum | ReduceOp::Mean), axes, body) = node.op else {
        return None;
    };
    let Op::Binary(f @ (BinaryOp::Mul | BinaryOp::Div), x, y) = b.nodes[body.index()].op else {
        return None;
    };
    let ty = |id: NodeId| b.nodes[id.index()].ty;
    let invariant = |id: NodeId| ty(id).minus(axes) == ty(id);
    let (factor, varying) = match f {
        BinaryOp::Mul if invariant(x) => (x, y),
        BinaryOp::Mul | BinaryOp::Div if invariant(y) => (y, x),
        _ => return None,
    };
    let varying_ty = ty(varying);
    let reduced = b.push(Op::Reduce(op, axes, varying), varying_ty.minus(axes), node.span);
    let (l, r) = if f == BinaryOp::Mul {
        (factor, reduced)
    } else {
        (reduced, factor)
    };
    Some(b.push(Op::Binary(f, l, r), node.ty, node.span))
}

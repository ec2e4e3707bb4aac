//! Constant folding: elementwise operations on constants are computed at compile time, with
//! the same float32 functions the interpreter uses. `where` on a constant condition picks its
//! branch when that branch already has the result's type.

use super::rewrite::{constant, rewrite, Rewrite};
use crate::ir::{Info, Kernel, Op};

pub fn run(kernel: &mut Kernel, _: &Info) {
    rewrite(kernel, |b, node| {
        let value = match node.op {
            Op::Unary(f, x) => constant(b, x).map(|x| f.apply(x)),
            Op::Binary(f, x, y) => constant(b, x).zip(constant(b, y)).map(|(x, y)| f.apply(x, y)),
            Op::Select(c, x, y) => {
                if let Some(c) = constant(b, c) {
                    let chosen = if c != 0.0 { x } else { y };
                    if b.nodes[chosen.index()].ty == node.ty {
                        return Rewrite::Replace(chosen);
                    }
                }
                None
            }
            _ => None,
        };
        match value {
            Some(v) => Rewrite::Replace(b.push(Op::Const(v), node.ty, node.span)),
            None => Rewrite::Keep,
        }
    });
}

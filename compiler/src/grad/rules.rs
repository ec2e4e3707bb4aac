//! The derivative rule of every operation: given forward node `y = op(x, ...)` and its adjoint
//! `g`, the contributions to the operands' adjoints (docs/ir.md, *Gradients*, lists them with
//! the subgradients chosen where a function is not differentiable).

use super::{GradError, Tape};
use crate::axes::AxisSet;
use crate::ir::{NodeId, Op};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp, NORMALIZE_EPS};

use BinaryOp::{Add, Div, Eq, Gt, Le, Lt, Mul, Sub};

/// Hands the adjoint `g` of forward node `y` on to its operands.
pub(super) fn propagate(t: &mut Tape, y: NodeId, g: NodeId) -> Result<(), GradError> {
    let node = *t.forward.node(y);
    match node.op {
        Op::Input(_) | Op::Const(_) | Op::Index(_) | Op::Size(_) => {}
        Op::Unary(op, x) => {
            if t.needs(x) {
                if let Some(c) = unary(t, op, x, y, g) {
                    t.accumulate(x, c, y);
                }
            }
        }
        Op::Binary(op, a, b) => binary(t, op, a, b, y, g),
        Op::Select(cond, a, b) => {
            let zero = t.constant(0.0, y);
            if t.needs(a) {
                let c = t.select(cond, g, zero, y);
                t.accumulate(a, c, y);
            }
            if t.needs(b) {
                let c = t.select(cond, zero, g, y);
                t.accumulate(b, c, y);
            }
        }
        Op::Reduce(op, axes, x) => {
            if t.needs(x) {
                let c = reduce(t, op, axes, x, y, g);
                t.accumulate(x, c, y);
            }
        }
        Op::Softmax(axes, x) => {
            // dx = y · (g − Σ g·y)
            let gy = t.binary(Mul, g, y, y);
            let s = t.reduce(ReduceOp::Sum, axes, gy, y);
            let centred = t.binary(Sub, g, s, y);
            let c = t.binary(Mul, y, centred, y);
            t.accumulate(x, c, y);
        }
        Op::Normalize(axes, x) => {
            let c = normalize(t, axes, x, y, g);
            t.accumulate(x, c, y);
        }
        Op::Pc1(..) => {
            return Err(GradError::NotDifferentiable {
                op: "pc1",
                why: "the sign and order of an eigenvector are not smooth functions of the input; \
                      write the program with sum[k] instead",
                span: node.span,
            })
        }
    }
    Ok(())
}

/// `value` (a contribution `g · slope`) where the adjoint `g` is not 0, and 0 where it is: a
/// branch that does not reach the output (a `where`, `min` or `max` not taken) hands on exact
/// zeros, which must not become NaN through an infinite slope (`0 / 0`, `0 · ∞`).
fn unless_zero(t: &mut Tape, g: NodeId, value: NodeId, at: NodeId) -> NodeId {
    let zero = t.constant(0.0, at);
    let live = t.binary(BinaryOp::Ne, g, zero, at);
    t.select(live, value, zero, at)
}

fn unary(t: &mut Tape, op: UnaryOp, x: NodeId, y: NodeId, g: NodeId) -> Option<NodeId> {
    Some(match op {
        UnaryOp::Neg => t.push(Op::Unary(UnaryOp::Neg, g), t.ty(g), y),
        // Subgradient 0 at 0 (and for NaN), as torch.relu.
        UnaryOp::Relu => {
            let zero = t.constant(0.0, y);
            let positive = t.binary(Gt, x, zero, y);
            t.select(positive, g, zero, y)
        }
        // sign(0) = 0: subgradient 0 at 0, as torch.abs.
        UnaryOp::Abs => {
            let zero = t.constant(0.0, y);
            let sign = t.push(Op::Unary(UnaryOp::Sign, x), t.ty(x), y);
            let value = t.binary(Mul, g, sign, y);
            let nonzero = t.binary(BinaryOp::Ne, x, zero, y);
            t.select(nonzero, value, zero, y)
        }
        UnaryOp::Sign => return None,
        UnaryOp::Exp => t.binary(Mul, g, y, y),
        UnaryOp::Log => {
            let value = t.binary(Div, g, x, y);
            unless_zero(t, g, value, y)
        }
        UnaryOp::Sqrt => {
            let two = t.constant(2.0, y);
            let twice = t.binary(Mul, two, y, y);
            let value = t.binary(Div, g, twice, y);
            unless_zero(t, g, value, y)
        }
        UnaryOp::Sigmoid => {
            let one = t.constant(1.0, y);
            let rest = t.binary(Sub, one, y, y);
            let slope = t.binary(Mul, y, rest, y);
            t.binary(Mul, g, slope, y)
        }
        UnaryOp::Tanh => {
            let one = t.constant(1.0, y);
            let square = t.binary(Mul, y, y, y);
            let slope = t.binary(Sub, one, square, y);
            t.binary(Mul, g, slope, y)
        }
    })
}

fn binary(t: &mut Tape, op: BinaryOp, a: NodeId, b: NodeId, y: NodeId, g: NodeId) {
    let (to_a, to_b): (Option<NodeId>, Option<NodeId>) = match op {
        Add => (Some(g), Some(g)),
        Sub => {
            let minus = t.needs(b).then(|| t.push(Op::Unary(UnaryOp::Neg, g), t.ty(g), y));
            (Some(g), minus)
        }
        Mul => {
            let ga = t.needs(a).then(|| t.binary(Mul, g, b, y));
            let gb = t.needs(b).then(|| t.binary(Mul, g, a, y));
            (ga, gb)
        }
        Div => {
            let ga = t.needs(a).then(|| {
                let value = t.binary(Div, g, b, y);
                unless_zero(t, g, value, y)
            });
            // d(a/b)/db = −(a/b)/b
            let gb = t.needs(b).then(|| {
                let q = t.binary(Div, y, b, y);
                let gq = t.binary(Mul, g, q, y);
                let value = t.push(Op::Unary(UnaryOp::Neg, gq), t.ty(gq), y);
                unless_zero(t, g, value, y)
            });
            (ga, gb)
        }
        BinaryOp::Pow => {
            // d(a^b)/da = b · a^(b−1); d(a^b)/db = a^b · ln a, taken as 0 where a ≤ 0.
            let ga = t.needs(a).then(|| {
                let one = t.constant(1.0, y);
                let lower = t.binary(Sub, b, one, y);
                let power = t.binary(BinaryOp::Pow, a, lower, y);
                let slope = t.binary(Mul, b, power, y);
                let value = t.binary(Mul, g, slope, y);
                unless_zero(t, g, value, y)
            });
            let gb = t.needs(b).then(|| {
                let zero = t.constant(0.0, y);
                let ln = t.push(Op::Unary(UnaryOp::Log, a), t.ty(a), y);
                let slope = t.binary(Mul, y, ln, y);
                let positive = t.binary(Gt, a, zero, y);
                let safe = t.select(positive, slope, zero, y);
                let value = t.binary(Mul, g, safe, y);
                unless_zero(t, g, value, y)
            });
            (ga, gb)
        }
        // The chosen operand takes the gradient; a tie goes to the first operand.
        BinaryOp::Min | BinaryOp::Max => {
            let (first, second) = if op == BinaryOp::Min {
                (Le, Gt)
            } else {
                (BinaryOp::Ge, Lt)
            };
            let zero = t.constant(0.0, y);
            let ga = t.needs(a).then(|| {
                let chosen = t.binary(first, a, b, y);
                t.select(chosen, g, zero, y)
            });
            let gb = t.needs(b).then(|| {
                let chosen = t.binary(second, a, b, y);
                t.select(chosen, g, zero, y)
            });
            (ga, gb)
        }
        // Comparisons and logic are piecewise constant: zero gradient.
        Eq | BinaryOp::Ne | Lt | Le | Gt | BinaryOp::Ge | BinaryOp::And | BinaryOp::Or => (None, None),
    };
    if let Some(c) = to_a {
        t.accumulate(a, c, y);
    }
    if let Some(c) = to_b {
        t.accumulate(b, c, y);
    }
}

/// `g / Σ_axes [x = y]` where `x` equals the extreme `y`, 0 elsewhere: the gradient of a max or min split evenly among the
/// elements that attain it (as torch.amax / amin).
fn to_extremes(t: &mut Tape, axes: AxisSet, x: NodeId, extreme: NodeId, g: NodeId, at: NodeId) -> NodeId {
    let hit = t.binary(Eq, x, extreme, at);
    let count = t.reduce(ReduceOp::Sum, axes, hit, at);
    let share = t.binary(Div, g, count, at);
    let zero = t.constant(0.0, at);
    t.select(hit, share, zero, at)
}

fn reduce(t: &mut Tape, op: ReduceOp, axes: AxisSet, x: NodeId, y: NodeId, g: NodeId) -> NodeId {
    let zero = t.constant(0.0, y);
    match op {
        ReduceOp::Sum => g,
        ReduceOp::Mean => {
            let count = t.push(Op::Size(axes), AxisSet::SCALAR, y);
            t.binary(Div, g, count, y)
        }
        ReduceOp::Max | ReduceOp::Min => to_extremes(t, axes, x, y, g, y),
        // d‖x‖/dx = x / ‖x‖, taken as 0 where ‖x‖ = 0.
        ReduceOp::Norm => {
            let unit = t.binary(Div, x, y, y);
            let positive = t.binary(Gt, y, zero, y);
            let safe = t.select(positive, unit, zero, y);
            t.binary(Mul, g, safe, y)
        }
        // dσ/dx = (x − μ) / (N σ), taken as 0 where σ = 0.
        ReduceOp::Std => {
            let mean = t.reduce(ReduceOp::Mean, axes, x, y);
            let centred = t.binary(Sub, x, mean, y);
            let count = t.push(Op::Size(axes), AxisSet::SCALAR, y);
            let scaled = t.binary(Mul, count, y, y);
            let slope = t.binary(Div, centred, scaled, y);
            let positive = t.binary(Gt, y, zero, y);
            let safe = t.select(positive, slope, zero, y);
            t.binary(Mul, g, safe, y)
        }
    }
}

/// `y = (x − m) / r` with `m = min x`, `M = max x`, `r = M − m + ε`: `dx = g / r` plus, through
/// the minimum, `(Σ g·y − Σ g) / r` and, through the maximum, `−Σ g·y / r`, each split evenly
/// among the elements that attain it.
fn normalize(t: &mut Tape, axes: AxisSet, x: NodeId, y: NodeId, g: NodeId) -> NodeId {
    let low = t.reduce(ReduceOp::Min, axes, x, y);
    let high = t.reduce(ReduceOp::Max, axes, x, y);
    let eps = t.constant(NORMALIZE_EPS, y);
    let span = t.binary(Sub, high, low, y);
    let range = t.binary(Add, span, eps, y);
    let direct = t.binary(Div, g, range, y);
    let sum_g = t.reduce(ReduceOp::Sum, axes, g, y);
    let gy = t.binary(Mul, g, y, y);
    let sum_gy = t.reduce(ReduceOp::Sum, axes, gy, y);
    let through_low = t.binary(Sub, sum_gy, sum_g, y);
    let through_low = t.binary(Div, through_low, range, y);
    let through_high = t.binary(Div, sum_gy, range, y);
    let through_high = t.push(Op::Unary(UnaryOp::Neg, through_high), t.ty(through_high), y);
    let to_low = to_extremes(t, axes, x, low, through_low, y);
    let to_high = to_extremes(t, axes, x, high, through_high, y);
    let both = t.binary(Add, to_low, to_high, y);
    t.binary(Add, direct, both, y)
}

//! Terms of the search: WEIGHTS expressions built bottom-up, each typed `[]`, `[k]`, `[h,w]`
//! or `[k,h,w]`, and printed as `.cam` source.

use camc_compiler::axes::{Axis, AxisSet};
use camc_compiler::ops::{format_number, BinaryOp, ReduceOp, UnaryOp};

pub type TermId = u32;

#[derive(Copy, Clone, Debug, PartialEq)]
pub enum TermOp {
    /// The space's terminal with this index.
    Tensor(u32),
    Const(f32),
    Unary(UnaryOp, TermId),
    Binary(BinaryOp, TermId, TermId),
    /// A reduction over `[h,w]`.
    Reduce(ReduceOp, TermId),
    /// Protected division `a / (b + 1e-7)` (one operator of the search space, `/+`): the
    /// form XGrad-CAM and most normalized weights take, so that a dead channel gives 0, not NaN.
    SafeDiv(TermId, TermId),
}

/// The guard of [`TermOp::SafeDiv`].
pub const SAFE_DIV_EPS: f32 = 1e-7;

#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Term {
    pub op: TermOp,
    pub ty: AxisSet,
    pub size: u32,
}

pub fn k() -> AxisSet {
    AxisSet::of(&[Axis::K])
}

pub fn hw() -> AxisSet {
    AxisSet::of(&[Axis::H, Axis::W])
}

pub fn khw() -> AxisSet {
    AxisSet::of(&[Axis::K, Axis::H, Axis::W])
}

fn binary_source(op: BinaryOp, a: String, b: String) -> String {
    let symbol = match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Pow => "^",
        BinaryOp::Min => return format!("min({a}, {b})"),
        BinaryOp::Max => return format!("max({a}, {b})"),
        other => return format!("{}({a}, {b})", other.name()),
    };
    format!("({a} {symbol} {b})")
}

/// The term as a `.cam` expression; `terminals` names the tensors.
pub fn source(terms: &[Term], id: TermId, terminals: &[String]) -> String {
    match terms[id as usize].op {
        TermOp::Tensor(i) => terminals[i as usize].clone(),
        // In parentheses when negative: `-2 ^ x` would read as `-(2 ^ x)`.
        TermOp::Const(c) if c < 0.0 => format!("({})", format_number(c)),
        TermOp::Const(c) => format_number(c),
        TermOp::Unary(UnaryOp::Neg, x) => format!("(-{})", source(terms, x, terminals)),
        TermOp::Unary(op, x) => format!("{}({})", op.name(), source(terms, x, terminals)),
        TermOp::Binary(op, a, b) => {
            binary_source(op, source(terms, a, terminals), source(terms, b, terminals))
        }
        TermOp::Reduce(op, x) => format!("{}[h,w]({})", op.name(), source(terms, x, terminals)),
        TermOp::SafeDiv(a, b) => format!(
            "({} / ({} + {}))",
            source(terms, a, terminals),
            source(terms, b, terminals),
            format_number(SAFE_DIV_EPS)
        ),
    }
}

/// The terminals a term reads, as a sorted list of indices.
pub fn tensors_used(terms: &[Term], id: TermId, used: &mut Vec<u32>) {
    match terms[id as usize].op {
        TermOp::Tensor(i) => {
            if !used.contains(&i) {
                used.push(i);
                used.sort_unstable();
            }
        }
        TermOp::Const(_) => {}
        TermOp::Unary(_, x) | TermOp::Reduce(_, x) => tensors_used(terms, x, used),
        TermOp::Binary(_, a, b) | TermOp::SafeDiv(a, b) => {
            tensors_used(terms, a, used);
            tensors_used(terms, b, used);
        }
    }
}

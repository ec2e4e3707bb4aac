//! Operator precedence over the flat `operand (infix operand)*` sequence the grammar yields.
//! Iterative (shunting-yard), so no input can overflow the stack; it rejects expressions
//! nested deeper than [`MAX_DEPTH`] so that later stages may recurse safely.

use super::ast::{BinaryOp, Expr, ExprId, ExprKind};
use crate::diag::Diagnostic;
use crate::span::Span;

/// The deepest expression tree a program may have.
pub const MAX_DEPTH: u32 = 256;

/// Binding power, loosest first. Unary minus sits between `*` and `^`, so `-x^2` is `-(x^2)`.
fn precedence(op: BinaryOp) -> u8 {
    match op {
        BinaryOp::Or => 1,
        BinaryOp::And => 2,
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => 3,
        BinaryOp::Add | BinaryOp::Sub => 4,
        BinaryOp::Mul | BinaryOp::Div => 5,
        BinaryOp::Pow => 7,
    }
}
const NEG_PRECEDENCE: u8 = 6;

/// An arena that records each node's depth as it is built.
#[derive(Default)]
pub struct ExprBuilder {
    pub exprs: Vec<Expr>,
    depths: Vec<u32>,
}

impl ExprBuilder {
    /// Adds a node after its operands; fails if it would nest deeper than [`MAX_DEPTH`].
    pub fn push(&mut self, kind: ExprKind, span: Span, operands: &[ExprId]) -> Result<ExprId, Diagnostic> {
        let depth = 1 + operands.iter().map(|o| self.depths[o.index()]).max().unwrap_or(0);
        if depth > MAX_DEPTH {
            return Err(Diagnostic::error(span, "expression is nested too deeply")
                .label(format!("more than {MAX_DEPTH} levels of operations"))
                .help("split it into `let` bindings"));
        }
        self.exprs.push(Expr { kind, span });
        self.depths.push(depth);
        Ok(ExprId(self.exprs.len() as u32 - 1))
    }

    pub fn span(&self, id: ExprId) -> Span {
        self.exprs[id.index()].span
    }
}

/// One element of an expression as the grammar gives it.
pub enum Token {
    /// A unary minus, with the span of the `-`.
    Neg(Span),
    /// A primary expression already in the arena.
    Operand(ExprId),
    Infix(BinaryOp),
}

enum Pending {
    Neg(Span),
    Infix(BinaryOp),
}

impl Pending {
    fn precedence(&self) -> u8 {
        match self {
            Pending::Neg(_) => NEG_PRECEDENCE,
            Pending::Infix(op) => precedence(*op),
        }
    }
}

/// Combines the tokens of one expression into a tree; `tokens` alternate operands (each
/// preceded by its unary minuses) and infix operators, as the grammar guarantees.
pub fn combine(
    builder: &mut ExprBuilder,
    tokens: impl IntoIterator<Item = Token>,
) -> Result<ExprId, Diagnostic> {
    let mut operands: Vec<ExprId> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    for token in tokens {
        match token {
            Token::Neg(span) => pending.push(Pending::Neg(span)),
            Token::Operand(id) => operands.push(id),
            Token::Infix(op) => {
                let right_assoc = op == BinaryOp::Pow;
                let p = precedence(op);
                while let Some(top) = pending.last() {
                    let tighter = top.precedence() > p || (top.precedence() == p && !right_assoc);
                    if !tighter {
                        break;
                    }
                    let top = pending.pop().expect("checked non-empty");
                    apply(builder, &mut operands, top)?;
                }
                pending.push(Pending::Infix(op));
            }
        }
    }
    while let Some(top) = pending.pop() {
        apply(builder, &mut operands, top)?;
    }
    debug_assert_eq!(
        operands.len(),
        1,
        "the grammar yields one more operand than infix operators"
    );
    Ok(operands.pop().expect("an expression has an operand"))
}

fn apply(builder: &mut ExprBuilder, operands: &mut Vec<ExprId>, op: Pending) -> Result<(), Diagnostic> {
    let id = match op {
        Pending::Neg(minus) => {
            let x = operands.pop().expect("unary minus has an operand");
            let span = minus.to(builder.span(x));
            builder.push(ExprKind::Neg(x), span, &[x])?
        }
        Pending::Infix(op) => {
            let rhs = operands.pop().expect("infix operator has a right operand");
            let lhs = operands.pop().expect("infix operator has a left operand");
            let span = builder.span(lhs).to(builder.span(rhs));
            builder.push(ExprKind::Binary(op, lhs, rhs), span, &[lhs, rhs])?
        }
    };
    operands.push(id);
    Ok(())
}

//! The typed, name-resolved program: what the type checker hands to the IR lowering.
//! Every expression has a type that has been checked; later stages never check it again.

use crate::axes::{Axis, AxisSet};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};
use crate::span::Span;
pub use crate::syntax::ast::{ExprId, ItemKind};

/// Index of a function in [`Program::functions`]. A function only calls lower indices.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FuncId(pub u32);

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: AxisSet,
    /// One tensor for every image (`shared [c,k]`); only a `cam`'s parameters are.
    pub shared: bool,
    /// Only scalar parameters have defaults.
    pub default: Option<f32>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Const(f32),
    Param(u32),
    /// The value of the function's `let` binding with this index.
    Let(u32),
    Unary(UnaryOp, ExprId),
    Binary(BinaryOp, ExprId, ExprId),
    /// `where(cond, then, otherwise)`.
    Select(ExprId, ExprId, ExprId),
    /// `clamp(x, lo, hi)`.
    Clamp(ExprId, ExprId, ExprId),
    Reduce(ReduceOp, AxisSet, ExprId),
    Softmax(AxisSet, ExprId),
    /// Min-max normalization over the axes.
    Normalize(AxisSet, ExprId),
    /// Projection on the first principal direction over the axis (Eigen-CAM).
    Pc1(Axis, ExprId),
    /// `pick[axis](x, index)`: `x` at position `index` of the axis (NaN where `index` is not
    /// one of the axis's positions).
    Pick(Axis, ExprId, ExprId),
    /// `size[axes]()`: the number of elements over the axes.
    Size(AxisSet),
    /// `index[axis]()`: the position along the axis, `0, 1, ..., size - 1`.
    Index(Axis),
    /// Arguments for the leading parameters; the rest take their defaults.
    Call(FuncId, Vec<ExprId>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: AxisSet,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Let {
    pub name: String,
    pub value: ExprId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub kind: ItemKind,
    pub params: Vec<Param>,
    pub lets: Vec<Let>,
    /// Operands before their users.
    pub exprs: Vec<Expr>,
    pub result: ExprId,
    pub ty: AxisSet,
    pub span: Span,
}

impl Function {
    pub fn expr(&self, id: ExprId) -> &Expr {
        &self.exprs[id.index()]
    }
}

/// A well-typed program: the definitions of one file and every definition they use.
/// Only the type checker makes one (`non_exhaustive` keeps other crates from building it).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Program {
    /// Callees before callers.
    pub functions: Vec<Function>,
    /// The definitions of the checked file, in source order.
    pub exported: Vec<FuncId>,
}

impl Program {
    pub fn function(&self, id: FuncId) -> &Function {
        &self.functions[id.0 as usize]
    }

    /// A definition of the checked file, by name.
    pub fn exported(&self, name: &str) -> Option<FuncId> {
        self.exported
            .iter()
            .copied()
            .find(|&id| self.function(id).name == name)
    }

    /// The `cam` definitions of the checked file.
    pub fn cams(&self) -> impl Iterator<Item = FuncId> + '_ {
        self.exported
            .iter()
            .copied()
            .filter(|&id| self.function(id).kind == ItemKind::Cam)
    }
}

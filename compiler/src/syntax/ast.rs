//! The syntax tree of a `.cam` file, as written: names unresolved, types unchecked.
//! Expressions of an item live in one arena, children before parents.

use crate::span::{SourceId, Span};

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// An axis list as written, `[k,h,w]`: names not yet checked against the known axes.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisList {
    pub names: Vec<Ident>,
    pub span: Span,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ItemKind {
    /// A CAM method: parameters bound to cache tensors, result spatial.
    Cam,
    /// A helper, inlined where called.
    Fn,
}

impl ItemKind {
    pub fn keyword(self) -> &'static str {
        match self {
            ItemKind::Cam => "cam",
            ItemKind::Fn => "fn",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    /// `shared`: one tensor for every image, not one per image.
    pub shared: Option<Span>,
    pub axes: AxisList,
    /// Default value of a scalar parameter, as written.
    pub default: Option<(f64, Span)>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExprId(pub u32);

impl ExprId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Let {
    pub name: Ident,
    pub value: ExprId,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Pow => "^",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Number(f64),
    Name(String),
    Neg(ExprId),
    Binary(BinaryOp, ExprId, ExprId),
    /// `callee[axes](args)`: a built-in, a `fn` or a `cam`.
    Call {
        callee: Ident,
        axes: Option<AxisList>,
        args: Vec<ExprId>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// A `cam` or `fn` definition.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub name: Ident,
    pub params: Vec<Param>,
    /// `let` bindings in order; the expressions of binding `i` are the arena entries after
    /// those of binding `i-1`, up to and including `lets[i].value`.
    pub lets: Vec<Let>,
    pub result: ExprId,
    /// Every expression of the item, each after its operands.
    pub exprs: Vec<Expr>,
    pub span: Span,
}

impl Item {
    pub fn expr(&self, id: ExprId) -> &Expr {
        &self.exprs[id.index()]
    }
}

/// One parsed source file: the items that parsed, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub source: SourceId,
    pub items: Vec<Item>,
}

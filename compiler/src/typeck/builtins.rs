//! The built-in functions and how each is called.

use crate::ops::{BinaryOp, ReduceOp, UnaryOp};

#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Builtin {
    Unary(UnaryOp),
    /// `min(a,b)`, `max(a,b)`.
    Binary(BinaryOp),
    Clamp,
    Where,
    Reduce(ReduceOp),
    Softmax,
    Normalize,
    Pc1,
    /// `pick[c](x, index)`: `x` at one index of the axis.
    Pick,
    /// `size[axes]()`: the number of elements over the axes.
    Size,
    /// `index[h]()`: the position along the axis.
    Index,
}

/// How a built-in takes axes: never, always (a reduction-like), or depending on the form.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Axes {
    None,
    Required,
}

impl Builtin {
    pub fn arity(self) -> usize {
        match self {
            Builtin::Size | Builtin::Index => 0,
            Builtin::Pick => 2,
            Builtin::Unary(_) | Builtin::Reduce(_) | Builtin::Softmax | Builtin::Normalize | Builtin::Pc1 => {
                1
            }
            Builtin::Binary(_) => 2,
            Builtin::Clamp | Builtin::Where => 3,
        }
    }

    pub fn axes(self) -> Axes {
        match self {
            Builtin::Reduce(_)
            | Builtin::Softmax
            | Builtin::Normalize
            | Builtin::Pc1
            | Builtin::Pick
            | Builtin::Size
            | Builtin::Index => Axes::Required,
            _ => Axes::None,
        }
    }

    /// What the arguments are called, for messages.
    pub fn signature(self, name: &str) -> String {
        match self {
            Builtin::Unary(_) => format!("{name}(x)"),
            Builtin::Binary(_) => format!("{name}(a, b)"),
            Builtin::Clamp => "clamp(x, lo, hi)".into(),
            Builtin::Where => "where(cond, then, otherwise)".into(),
            Builtin::Pc1 => "pc1[k](x)".into(),
            Builtin::Pick => "pick[c](x, index)".into(),
            Builtin::Size => "size[h,w]()".into(),
            Builtin::Index => "index[h]()".into(),
            _ => format!("{name}[axes](x)"),
        }
    }
}

/// Every built-in name, for suggestions and to keep user definitions from taking them.
pub const NAMES: [&str; 22] = [
    "relu",
    "abs",
    "sign",
    "exp",
    "log",
    "sqrt",
    "sigmoid",
    "tanh",
    "min",
    "max",
    "clamp",
    "where",
    "sum",
    "mean",
    "norm",
    "std",
    "softmax",
    "normalize",
    "pc1",
    "pick",
    "size",
    "index",
];

/// The built-in called `name`, in the form with axes (`max[h,w](x)`) or without (`max(a,b)`).
pub fn lookup(name: &str, with_axes: bool) -> Option<Builtin> {
    let unary = UnaryOp::ALL
        .into_iter()
        .find(|op| op.name() == name && *op != UnaryOp::Neg);
    if let Some(op) = unary {
        return Some(Builtin::Unary(op));
    }
    Some(match (name, with_axes) {
        ("min", false) => Builtin::Binary(BinaryOp::Min),
        ("max", false) => Builtin::Binary(BinaryOp::Max),
        ("min", true) => Builtin::Reduce(ReduceOp::Min),
        ("max", true) => Builtin::Reduce(ReduceOp::Max),
        ("sum", _) => Builtin::Reduce(ReduceOp::Sum),
        ("mean", _) => Builtin::Reduce(ReduceOp::Mean),
        ("norm", _) => Builtin::Reduce(ReduceOp::Norm),
        ("std", _) => Builtin::Reduce(ReduceOp::Std),
        ("clamp", _) => Builtin::Clamp,
        ("where", _) => Builtin::Where,
        ("softmax", _) => Builtin::Softmax,
        ("normalize", _) => Builtin::Normalize,
        ("pc1", _) => Builtin::Pc1,
        ("pick", _) => Builtin::Pick,
        ("size", _) => Builtin::Size,
        ("index", _) => Builtin::Index,
        _ => return None,
    })
}

//! The IR: one dataflow graph per program, every call inlined and every `let` resolved. Nodes
//! live in an arena, operands before users, each with its type (a set of axes) and the span of
//! the source it came from. Every backend lowers from this and nothing else.

mod lower;
mod print;
mod validate;

pub use lower::{lower, LowerError};
pub use print::print;
pub use validate::{validate, Info, Invalid};

use crate::axes::{Axis, AxisSet};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};
use crate::span::Span;

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Op {
    /// The kernel's input with this index: a per-image tensor bound by name.
    Input(u32),
    Const(f32),
    Unary(UnaryOp, NodeId),
    Binary(BinaryOp, NodeId, NodeId),
    /// `cond != 0 ? then : otherwise`.
    Select(NodeId, NodeId, NodeId),
    Reduce(ReduceOp, AxisSet, NodeId),
    Softmax(AxisSet, NodeId),
    /// Min-max normalization over the axes, `(x - min) / (max - min + 1e-7)`.
    Normalize(AxisSet, NodeId),
    /// Projection on the first principal direction over the axis (see `pc1` in docs/language.md).
    Pc1(Axis, NodeId),
    /// The position along the axis, as a float: `0, 1, ..., size - 1` (type `[axis]`).
    Index(Axis),
    /// The number of elements over the axes (a scalar): the product of their sizes.
    Size(AxisSet),
}

impl Op {
    /// The operands, in order.
    pub fn operands(&self) -> impl Iterator<Item = NodeId> {
        let list: [Option<NodeId>; 3] = match *self {
            Op::Input(_) | Op::Const(_) | Op::Index(_) | Op::Size(_) => [None, None, None],
            Op::Unary(_, x)
            | Op::Reduce(_, _, x)
            | Op::Softmax(_, x)
            | Op::Normalize(_, x)
            | Op::Pc1(_, x) => [Some(x), None, None],
            Op::Binary(_, a, b) => [Some(a), Some(b), None],
            Op::Select(c, a, b) => [Some(c), Some(a), Some(b)],
        };
        list.into_iter().flatten()
    }

    /// The same operation on other operands (`f` maps each operand).
    pub fn map_operands(&self, mut f: impl FnMut(NodeId) -> NodeId) -> Op {
        match *self {
            Op::Input(_) | Op::Const(_) | Op::Index(_) | Op::Size(_) => *self,
            Op::Unary(op, x) => Op::Unary(op, f(x)),
            Op::Binary(op, a, b) => Op::Binary(op, f(a), f(b)),
            Op::Select(c, a, b) => Op::Select(f(c), f(a), f(b)),
            Op::Reduce(op, axes, x) => Op::Reduce(op, axes, f(x)),
            Op::Softmax(axes, x) => Op::Softmax(axes, f(x)),
            Op::Normalize(axes, x) => Op::Normalize(axes, f(x)),
            Op::Pc1(axis, x) => Op::Pc1(axis, f(x)),
        }
    }

    /// Whether the value at an index depends only on the operands at the same index.
    pub fn is_elementwise(&self) -> bool {
        matches!(self, Op::Unary(..) | Op::Binary(..) | Op::Select(..))
    }
}

#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub ty: AxisSet,
    pub span: Span,
}

/// A tensor the kernel reads, bound by name to a cache tensor of the same name.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    pub ty: AxisSet,
    pub kind: InputKind,
    pub span: Span,
}

/// Whether an input holds a tensor per image or one tensor for every image.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// One tensor per image: in a batch, image `i`'s values follow image `i - 1`'s, and a
    /// cache tensor's leading axis is the image axis.
    #[default]
    PerImage,
    /// One tensor for all images (a classifier head's weights): no image axis anywhere.
    Shared,
}

/// What a kernel's output is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// A program's map: the output is spatial (`[h,w]` or `[d,h,w]`).
    #[default]
    Map,
    /// The gradient of a program's map with respect to its input `wrt`, typed `ty` as that
    /// input (see `crate::grad`; the input itself may be gone after dead-code elimination).
    Gradient { wrt: String, ty: AxisSet },
}

/// One program, ready for a backend: computes `output` for one image from `inputs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    pub inputs: Vec<Input>,
    /// Operands before users.
    pub nodes: Vec<Node>,
    pub output: NodeId,
    pub role: Role,
}

impl Kernel {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn output_ty(&self) -> AxisSet {
        self.node(self.output).ty
    }

    pub fn ids(&self) -> impl DoubleEndedIterator<Item = NodeId> {
        (0..self.nodes.len() as u32).map(NodeId)
    }
}

/// Builds a kernel's node arena.
#[derive(Default)]
pub struct Builder {
    pub nodes: Vec<Node>,
}

impl Builder {
    pub fn push(&mut self, op: Op, ty: AxisSet, span: Span) -> NodeId {
        self.nodes.push(Node { op, ty, span });
        NodeId(self.nodes.len() as u32 - 1)
    }
}

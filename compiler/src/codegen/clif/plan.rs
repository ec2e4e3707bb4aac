//! The fusion plan: which nodes get a buffer, and the stages (loop nests) that fill them.
//!
//! The rule is tinygrad's single-consumer / reduce-boundary rule, simplified for one image:
//! every reduction, `softmax`, `normalize` and `pc1` is materialized (its own stage and buffer);
//! elementwise nodes are not, and are recomputed inside each stage that reads them (within one
//! stage a node is computed once per iteration, at the outermost loop where its value is known).
//! The only elementwise nodes that get a buffer are the program's output and the operands of the
//! operations done by runtime helpers (`std`, `softmax`, `normalize`, `pc1`), which read a whole
//! tensor. `index` and `size` are filled by the helper too: a few values per image. A sum that
//! is a matrix product (see `contract.rs`) is a GEMM call on its two materialized operands.

use super::contract::{contraction, Gemm};
use crate::axes::{Axis, AxisSet};
use crate::dims::Dims;
use crate::ir::{Info, Kernel, NodeId, Op};
use crate::ops::ReduceOp;

/// Where a materialized value lives for one image.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// The kernel's input with this index.
    Input(u32),
    /// The output buffer.
    Out,
    /// f32 values at this byte offset of the scratch buffer.
    Scratch(usize),
}

/// The operations a runtime helper computes (`camc_helper`'s `op` argument).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum HelperOp {
    Std = 0,
    Softmax = 1,
    Normalize = 2,
    Pc1 = 3,
    Index = 4,
    Size = 5,
}

#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Stage {
    /// Evaluates the (elementwise or input) node over its type into `dst`.
    Map { node: NodeId, dst: Place },
    /// A `sum`, `mean`, `max`, `min` or `norm` node; `acc` is the byte offset of a scratch
    /// accumulator (f64, or f32 for `max`/`min`) when partial results must be kept per output
    /// element across outer loops.
    Reduce { node: NodeId, acc: Option<usize> },
    /// A node computed by the runtime helper from its materialized operand.
    Helper { node: NodeId, op: HelperOp },
    /// A `sum` of a product computed as a matrix product of the materialized `a` and `b`.
    Contract {
        node: NodeId,
        a: NodeId,
        b: NodeId,
        gemm: Gemm,
    },
}

pub struct Plan {
    /// Per node: where its value is stored, if it is materialized.
    pub place: Vec<Option<Place>>,
    pub stages: Vec<Stage>,
    /// Bytes of scratch memory one image needs (a multiple of 16).
    pub scratch_bytes: usize,
}

fn helper_op(op: &Op) -> Option<HelperOp> {
    match op {
        Op::Reduce(ReduceOp::Std, ..) => Some(HelperOp::Std),
        Op::Softmax(..) => Some(HelperOp::Softmax),
        Op::Normalize(..) => Some(HelperOp::Normalize),
        Op::Pc1(..) => Some(HelperOp::Pc1),
        Op::Index(..) => Some(HelperOp::Index),
        Op::Size(..) => Some(HelperOp::Size),
        _ => None,
    }
}

/// The axes of `ty` whose size is not 1, in canonical order: the loops a nest over `ty` needs.
pub fn loop_axes(ty: AxisSet, sizes: Dims) -> Vec<Axis> {
    ty.iter().filter(|&a| sizes.size(a) != 1).collect()
}

/// Whether a reduction of a `ty` value over `axes` needs an accumulator buffer: when the
/// innermost loop is kept (partial sums per output element), or when a reduced loop is outside
/// a kept one (a result is only final after the outer loops finish).
pub fn needs_accumulator(ty: AxisSet, axes: AxisSet, sizes: Dims) -> bool {
    let order = loop_axes(ty, sizes);
    let register = order.last().is_some_and(|a| axes.contains(*a));
    let first_reduced = order.iter().position(|a| axes.contains(*a));
    let last_kept = order.iter().rposition(|a| !axes.contains(*a));
    !register || matches!((first_reduced, last_kept), (Some(r), Some(k)) if r < k)
}

fn round16(bytes: usize) -> usize {
    bytes.div_ceil(16) * 16
}

pub fn plan(kernel: &Kernel, info: &Info, sizes: Dims) -> Plan {
    let live = &info.live;
    let mut materialized: Vec<bool> = kernel
        .nodes
        .iter()
        .map(|n| {
            matches!(
                n.op,
                Op::Input(_)
                    | Op::Reduce(..)
                    | Op::Softmax(..)
                    | Op::Normalize(..)
                    | Op::Pc1(..)
                    | Op::Index(..)
                    | Op::Size(..)
            )
        })
        .collect();
    materialized[kernel.output.index()] = true;
    let contractions: Vec<_> = kernel
        .ids()
        .map(|id| contraction(kernel, id, sizes).filter(|_| live[id.index()]))
        .collect();
    for &(a, b, _) in contractions.iter().flatten() {
        materialized[a.index()] = true;
        materialized[b.index()] = true;
    }
    for node in &kernel.nodes {
        if helper_op(&node.op).is_some() {
            for operand in node.op.operands() {
                if !matches!(kernel.node(operand).op, Op::Const(_)) {
                    materialized[operand.index()] = true;
                }
            }
        }
    }
    let mut scratch = 0usize;
    let mut place = vec![None; kernel.nodes.len()];
    let mut stages = Vec::new();
    for id in kernel.ids() {
        let i = id.index();
        if !live[i] || !materialized[i] {
            continue;
        }
        let node = kernel.node(id);
        let dst = if let Op::Input(index) = node.op {
            Place::Input(index)
        } else if id == kernel.output {
            Place::Out
        } else {
            let at = scratch;
            scratch += round16(sizes.len(node.ty) * 4);
            Place::Scratch(at)
        };
        place[i] = Some(dst);
        if let Some((a, b, gemm)) = contractions[i] {
            stages.push(Stage::Contract { node: id, a, b, gemm });
            continue;
        }
        match node.op {
            Op::Input(_) => {}
            Op::Reduce(op, axes, x) if helper_op(&node.op).is_none() => {
                let x_ty = kernel.node(x).ty;
                let acc = needs_accumulator(x_ty, axes, sizes).then(|| {
                    let at = scratch;
                    let width = if matches!(op, ReduceOp::Max | ReduceOp::Min) {
                        4
                    } else {
                        8
                    };
                    scratch += round16(sizes.len(node.ty) * width);
                    at
                });
                stages.push(Stage::Reduce { node: id, acc });
            }
            _ => match helper_op(&node.op) {
                Some(op) => stages.push(Stage::Helper { node: id, op }),
                None => stages.push(Stage::Map { node: id, dst }),
            },
        }
    }
    // An output that is an input is copied.
    if let Op::Input(_) = kernel.node(kernel.output).op {
        stages.push(Stage::Map {
            node: kernel.output,
            dst: Place::Out,
        });
    }
    Plan {
        place,
        stages,
        scratch_bytes: scratch,
    }
}

/// The nodes a stage computes or reads, in order: everything reachable from `root` through
/// elementwise nodes that are not materialized; materialized nodes and constants are leaves.
/// `root` itself is computed even when it is materialized (it is the stage's own node).
pub fn fused(kernel: &Kernel, plan: &Plan, root: NodeId) -> Vec<NodeId> {
    let mut seen = vec![false; kernel.nodes.len()];
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id.index()], true) {
            continue;
        }
        let node = kernel.node(id);
        let is_leaf = id != root && plan.place[id.index()].is_some();
        if node.op.is_elementwise() && !is_leaf {
            stack.extend(node.op.operands());
        }
    }
    kernel.ids().filter(|id| seen[id.index()]).collect()
}

/// Values of the largest tensor the function's loops walk for one image: every node a stage
/// computes or reads, a contraction's operands and result (its product is never formed).
pub fn largest_walked(kernel: &Kernel, plan: &Plan, sizes: Dims) -> usize {
    let len = |id: NodeId| sizes.len(kernel.node(id).ty);
    plan.stages
        .iter()
        .flat_map(|stage| match *stage {
            Stage::Map { node, .. } => fused(kernel, plan, node),
            Stage::Reduce { node, .. } | Stage::Helper { node, .. } => {
                let mut nodes: Vec<NodeId> = kernel
                    .node(node)
                    .op
                    .operands()
                    .flat_map(|x| fused(kernel, plan, x))
                    .collect();
                nodes.push(node);
                nodes
            }
            Stage::Contract { node, a, b, .. } => vec![node, a, b],
        })
        .map(len)
        .max()
        .unwrap_or(1)
}

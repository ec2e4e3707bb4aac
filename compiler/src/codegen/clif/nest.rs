//! Loop nests. A stage iterates over one type in canonical order (k, d, h, w). Axes of size 1
//! get no loop, and adjacent axes that every tensor the stage touches has both or neither of
//! are merged into one loop (an `[h,w]` map is one loop of h·w), so the innermost loop is as
//! long and as contiguous as the layout allows. The innermost loop runs four lanes at a time
//! (f32x4), ending with an overlapping vector or a scalar tail; every other value is computed
//! at the outermost loop where it is known (a `[k]` weight once per channel, then splatted for
//! the vector loop).

use super::emit::Cx;
use super::plan::{fused, loop_axes, Plan};
use crate::axes::AxisSet;
use crate::dims::Dims;
use crate::ir::{Kernel, NodeId, Op};
use cranelift_codegen::ir::{condcodes::IntCC, types, BlockArg, ConstantData, InstBuilder, Type, Value};
use std::collections::HashMap;

/// Scalar code (f32) or four lanes (f32x4).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Scalar,
    Vector,
}

impl Mode {
    pub fn f32(self) -> Type {
        match self {
            Mode::Scalar => types::F32,
            Mode::Vector => types::F32X4,
        }
    }
}

/// One loop: `size` iterations over the merged `axes`.
#[derive(Copy, Clone, Debug)]
pub struct Dim {
    pub size: usize,
    pub axes: AxisSet,
}

/// A stage's loops and the nodes it computes.
pub struct Nest {
    pub dims: Vec<Dim>,
    /// The nodes read or computed, operands first.
    pub nodes: Vec<NodeId>,
    /// Per node of `nodes`: the number of loops it is inside (0 = before every loop).
    level: HashMap<NodeId, usize>,
    /// The node computed even though it is materialized (the stage's own).
    pub root: NodeId,
    /// The tensor types whose offsets the loops track.
    pub types: Vec<AxisSet>,
    strides: Vec<Vec<usize>>,
    /// Whether the innermost loop runs four lanes at a time.
    pub vectorize: bool,
    /// Whether a row that does not fill whole vectors may end with an overlapping vector
    /// (see [`Env::fresh`]) rather than scalars.
    pub overlap: bool,
    /// Operands of the nodes the nest computes.
    operands: HashMap<NodeId, Vec<NodeId>>,
}

/// Values known at one point of a nest.
#[derive(Clone)]
pub struct Env {
    /// Scalars, and in a vector loop body the vectors of the innermost nodes.
    pub vals: HashMap<NodeId, Value>,
    /// Outer values splatted for the vector loop.
    pub splats: HashMap<NodeId, Value>,
    /// Element offset of the current index in each of `Nest::types`.
    pub offsets: Vec<Value>,
    /// In the last vector of a row that does not fill whole vectors, which starts 4 lanes
    /// before the row's end and so overlaps the previous vector: the mask (all ones) of the
    /// lanes that vector did not cover. Stores may write the others again (the same values);
    /// reductions must give them their identity.
    pub fresh: Option<Value>,
}

impl Env {
    pub fn offset(&self, nest: &Nest, ty: AxisSet) -> Value {
        let i = nest.types.iter().position(|t| *t == ty);
        self.offsets[i.expect("the nest tracks every type it stores or loads")]
    }
}

impl Nest {
    /// The nest over `ty` computing `root`; `extra` are the types of buffers the stage writes.
    pub fn new(
        kernel: &Kernel,
        plan: &Plan,
        sizes: Dims,
        root: NodeId,
        ty: AxisSet,
        extra: &[AxisSet],
    ) -> Nest {
        let nodes = fused(kernel, plan, root);
        let mut types: Vec<AxisSet> = extra.to_vec();
        for &id in &nodes {
            if is_load(kernel, plan, root, id) && !types.contains(&kernel.node(id).ty) {
                types.push(kernel.node(id).ty);
            }
        }
        let mut dims: Vec<Dim> = Vec::new();
        for axis in loop_axes(ty, sizes) {
            let one = AxisSet::SCALAR.with(axis);
            match dims.last_mut() {
                Some(last) if mergeable(&types, last.axes, axis) => {
                    last.size *= sizes.size(axis);
                    last.axes = last.axes.with(axis);
                }
                _ => dims.push(Dim {
                    size: sizes.size(axis),
                    axes: one,
                }),
            }
        }
        let level = nodes
            .iter()
            .map(|&id| {
                let node_ty = kernel.node(id).ty;
                let deepest = dims.iter().rposition(|d| d.axes.minus(node_ty) != d.axes);
                (id, deepest.map_or(0, |d| d + 1))
            })
            .collect();
        let operands = nodes
            .iter()
            .filter(|&&id| !is_load(kernel, plan, root, id))
            .map(|&id| (id, kernel.node(id).op.operands().collect()))
            .collect();
        let strides = types
            .iter()
            .map(|&t| {
                dims.iter()
                    .map(|d| d.axes.iter().last().map_or(0, |inner| sizes.stride(t, inner)))
                    .collect()
            })
            .collect();
        Nest {
            dims,
            nodes,
            level,
            root,
            types,
            strides,
            vectorize: true,
            overlap: true,
            operands,
        }
    }

    pub fn level(&self, id: NodeId) -> usize {
        self.level[&id]
    }

    /// The operands the nest computes `id` from (none for a value it loads).
    pub fn operands(&self, id: NodeId) -> &[NodeId] {
        self.operands.get(&id).map_or(&[], Vec::as_slice)
    }

    pub fn depth(&self) -> usize {
        self.dims.len()
    }

    /// Whether [`Cx::innermost`] computes some elements as scalars.
    pub fn has_scalars(&self) -> bool {
        let size = self.dims.last().map_or(1, |d| d.size);
        !self.vectorize || size < 4 || (!self.overlap && !size.is_multiple_of(4))
    }
}

/// Whether loop `axes` and the next `axis` can be one loop: every type has all or none of them.
/// (Every type already has all or none of `axes`.)
fn mergeable(types: &[AxisSet], axes: AxisSet, axis: crate::axes::Axis) -> bool {
    types.iter().all(|t| axes.is_subset_of(*t) == t.contains(axis))
}

/// Whether a nest rooted at `root` reads `id` from memory rather than computing it: inputs and
/// materialized values, except an elementwise root (the value the stage itself stores).
pub fn is_load(kernel: &Kernel, plan: &Plan, root: NodeId, id: NodeId) -> bool {
    match kernel.node(id).op {
        Op::Input(_) => true,
        Op::Const(_) => false,
        ref op => plan.place[id.index()].is_some() && (id != root || !op.is_elementwise()),
    }
}

/// What a nest does with each value of its innermost loop: gets the environment, the mode and
/// the carried values, returns the carried values for the next iteration.
pub type Sink<'s> = dyn FnMut(&mut Cx, &Nest, &Env, Mode, Vec<Value>) -> Vec<Value> + 's;
/// What runs at a given level of a nest.
pub type AtLevel<'s> = dyn FnMut(&mut Cx, Env, Vec<Value>) -> Vec<Value> + 's;

impl Cx<'_, '_> {
    /// `for i in (start..end).step_by(step)`, threading `carried` through the iterations.
    pub fn counted(
        &mut self,
        start: usize,
        end: usize,
        step: usize,
        carried: Vec<Value>,
        body: impl FnOnce(&mut Self, Value, Vec<Value>) -> Vec<Value>,
    ) -> Vec<Value> {
        if start >= end {
            return carried;
        }
        if end - start <= step {
            let i = self.b.ins().iconst(types::I64, start as i64);
            return body(self, i, carried);
        }
        let kinds: Vec<Type> = carried.iter().map(|v| self.b.func.dfg.value_type(*v)).collect();
        let head = self.b.create_block();
        let exit = self.b.create_block();
        let i = self.b.append_block_param(head, types::I64);
        let params: Vec<Value> = kinds
            .iter()
            .map(|t| self.b.append_block_param(head, *t))
            .collect();
        let results: Vec<Value> = kinds
            .iter()
            .map(|t| self.b.append_block_param(exit, *t))
            .collect();
        let first = self.b.ins().iconst(types::I64, start as i64);
        let args: Vec<BlockArg> = std::iter::once(first)
            .chain(carried)
            .map(BlockArg::Value)
            .collect();
        self.b.ins().jump(head, &args);
        self.b.switch_to_block(head);
        let next = body(self, i, params);
        let i_next = self.b.ins().iadd_imm_s(i, step as i64);
        let more = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, i_next, end as i64);
        let again: Vec<BlockArg> = std::iter::once(i_next)
            .chain(next.iter().copied())
            .map(BlockArg::Value)
            .collect();
        let done: Vec<BlockArg> = next.into_iter().map(BlockArg::Value).collect();
        self.b.ins().brif(more, head, &again, exit, &done);
        self.b.switch_to_block(exit);
        results
    }

    /// Moves the offsets to index `i` of loop `dim`.
    pub fn advance(&mut self, nest: &Nest, env: &mut Env, dim: usize, i: Value) {
        for (t, offset) in env.offsets.iter_mut().enumerate() {
            let stride = nest.strides[t][dim];
            if stride != 0 {
                let step = if stride == 1 {
                    i
                } else {
                    self.b.ins().imul_imm_s(i, stride as i64)
                };
                *offset = self.b.ins().iadd(*offset, step);
            }
        }
    }

    /// Computes the nodes of `level` that are not known yet.
    pub fn compute(&mut self, nest: &Nest, env: &mut Env, level: usize, mode: Mode) {
        for &id in &nest.nodes {
            if nest.level(id) == level && !env.vals.contains_key(&id) {
                let value = self.value(nest, env, mode, id);
                env.vals.insert(id, value);
            }
        }
    }

    /// Runs loops `from..to` (as scalar loops), computing each level's values, and calls `at`
    /// inside loop `to - 1` with the values of level `to` computed.
    pub fn walk_to(
        &mut self,
        nest: &Nest,
        from: usize,
        to: usize,
        mut env: Env,
        carried: Vec<Value>,
        at: &mut AtLevel,
    ) -> Vec<Value> {
        self.compute(nest, &mut env, from, Mode::Scalar);
        if from == to {
            return at(self, env, carried);
        }
        let size = nest.dims[from].size;
        self.counted(0, size, 1, carried, |cx, i, carried| {
            let mut inner = env.clone();
            cx.advance(nest, &mut inner, from, i);
            cx.walk_to(nest, from + 1, to, inner, carried, at)
        })
    }

    /// The whole nest, `sink` called on every element.
    pub fn run_all(&mut self, nest: &Nest, env: Env, carried: Vec<Value>, sink: &mut Sink) -> Vec<Value> {
        let n = nest.depth();
        if n == 0 {
            let mut env = env;
            self.compute(nest, &mut env, 0, Mode::Scalar);
            return sink(self, nest, &env, Mode::Scalar, carried);
        }
        self.walk_to(nest, 0, n - 1, env, carried, &mut |cx, env, carried| {
            cx.innermost(nest, env, carried, sink)
        })
    }

    /// The nest from level `from` on (inside loops `..from`, which must not include the
    /// innermost one unless `from` is 0), `sink` called on every element.
    pub fn run_from(&mut self, nest: &Nest, from: usize, env: Env, sink: &mut Sink) {
        if from == 0 {
            self.run_all(nest, env, Vec::new(), sink);
        } else {
            let n = nest.depth();
            self.walk_to(nest, from, n - 1, env, Vec::new(), &mut |cx, env, carried| {
                cx.innermost(nest, env, carried, sink)
            });
        }
    }

    /// The innermost loop, four lanes at a time. A row that does not fill whole vectors ends
    /// with a vector overlapping the previous one (see [`Env::fresh`]) where the nest allows,
    /// else with scalars; a row shorter than a vector is scalar.
    pub fn innermost(&mut self, nest: &Nest, env: Env, carried: Vec<Value>, sink: &mut Sink) -> Vec<Value> {
        let n = nest.depth();
        let size = nest.dims[n - 1].size;
        // Elements `start..end`, four at a time in `Mode::Vector`.
        let mut run =
            |cx: &mut Self, start: usize, end: usize, mode: Mode, env: &Env, carried: Vec<Value>| {
                let step = if mode == Mode::Vector { 4 } else { 1 };
                cx.counted(start, end, step, carried, |cx, i, carried| {
                    let mut inner = env.clone();
                    cx.advance(nest, &mut inner, n - 1, i);
                    cx.compute(nest, &mut inner, n, mode);
                    sink(cx, nest, &inner, mode, carried)
                })
            };
        if !nest.vectorize || size < 4 {
            return run(self, 0, size, Mode::Scalar, &env, carried);
        }
        // (Cases in the same order as `Nest::has_scalars`.)
        let mut outer = env;
        for &id in &nest.nodes {
            if nest.level(id) != n {
                continue;
            }
            for &operand in nest.operands(id) {
                if nest.level(operand) < n && !outer.splats.contains_key(&operand) {
                    let splat = self.b.ins().splat(types::F32X4, outer.vals[&operand]);
                    outer.splats.insert(operand, splat);
                }
            }
        }
        let whole = size / 4 * 4;
        let carried = run(self, 0, whole, Mode::Vector, &outer, carried);
        if whole == size {
            return carried;
        }
        if !nest.overlap {
            return run(self, whole, size, Mode::Scalar, &outer, carried);
        }
        let covered = 4 - (size - whole);
        let lanes: Vec<u8> = (0..4)
            .flat_map(|lane| [if lane < covered { 0 } else { 0xff }; 4])
            .collect();
        let mask = self.b.func.dfg.constants.insert(ConstantData::from(lanes));
        outer.fresh = Some(self.b.ins().vconst(types::F32X4, mask));
        run(self, size - 4, size, Mode::Vector, &outer, carried)
    }
}

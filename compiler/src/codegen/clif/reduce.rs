//! Reductions (`sum`, `mean`, `norm` accumulate in f64 like the interpreter; `max`, `min` in
//! f32, propagating NaN). The nest runs over the operand's type in layout order:
//!
//! - when the innermost loop is reduced (`mean[h,w](G)`), the reduced inner loops accumulate
//!   in registers (two f64x2 and an f64 for the scalar tail; one f32 for `max`/`min`, whose
//!   ties between zeros must follow the interpreter's order), reduced to one value when those
//!   loops end;
//! - when it is kept (`sum[k](w * A)`), each element adds into an accumulator buffer indexed by
//!   the kept axes, four lanes at a time; the final `sum[k]` of a CAM accumulates per pixel.
//!
//! When a reduced loop is outside a kept one, the buffer keeps partial results; a last loop
//! turns the buffer into the result (divides by the count, takes the square root).

use super::emit::Cx;
use super::nest::{Env, Mode, Nest};
use crate::axes::AxisSet;
use crate::ir::{NodeId, Op};
use crate::ops::ReduceOp;
use cranelift_codegen::ir::{
    immediates::Ieee64, types, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value,
};

/// How a reduction accumulates.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Kind {
    /// f64 sums (of values, or of squares for `norm`).
    Wide { squares: bool },
    /// f32 running maximum (`max`) or minimum.
    Extreme { max: bool },
}

impl Kind {
    fn of(op: ReduceOp) -> Kind {
        match op {
            ReduceOp::Max => Kind::Extreme { max: true },
            ReduceOp::Min => Kind::Extreme { max: false },
            ReduceOp::Norm => Kind::Wide { squares: true },
            _ => Kind::Wide { squares: false },
        }
    }

    /// Bytes per accumulator element.
    fn width(self) -> i64 {
        match self {
            Kind::Wide { .. } => 8,
            Kind::Extreme { .. } => 4,
        }
    }
}

/// One reduction stage, ready to emit: its nest and parameters.
pub(super) struct Job {
    pub nest: Nest,
    op: ReduceOp,
    kind: Kind,
    x: NodeId,
    kept: AxisSet,
    /// Elements reduced into each result.
    count: f64,
    dst: Value,
    pub acc: Option<Value>,
    /// When the innermost loop is reduced: the first of the reduced loops that end the nest.
    pub suffix: Option<usize>,
}

impl Cx<'_, '_> {
    pub(super) fn prepare_reduce(&mut self, node: NodeId, acc: Option<usize>) -> Option<Job> {
        let Op::Reduce(op, axes, x) = self.kernel.node(node).op else {
            return None;
        };
        let kind = Kind::of(op);
        let x_ty = self.kernel.node(x).ty;
        let kept = x_ty.minus(axes);
        let mut nest = Nest::new(self.kernel, self.plan, self.sizes, x, x_ty, &[kept]);
        let n = nest.depth();
        let register = n > 0 && nest.dims[n - 1].axes.is_subset_of(axes);
        // A running max/min in lanes would break ties between +0 and -0 in another order than
        // the interpreter's left-to-right fold; it stays scalar (sums are order-free in f64).
        nest.vectorize = !(register && matches!(kind, Kind::Extreme { .. }));
        // Adding an overlapping vector into the buffer would load 16 bytes that the previous
        // vector stored as two halves, which the store buffer cannot forward (measured: 8% of
        // Grad-CAM++'s time): that tail stays scalar.
        nest.overlap = register;
        let suffix = register.then(|| {
            (0..n)
                .rev()
                .take_while(|&d| nest.dims[d].axes.is_subset_of(axes))
                .last()
                .unwrap_or(n - 1)
        });
        let dst = self.place(node)?;
        Some(Job {
            nest,
            op,
            kind,
            x,
            kept,
            count: self.sizes.len(axes) as f64,
            dst: self.base(dst),
            acc: acc.map(|offset| self.scratch_at(offset)),
            suffix,
        })
    }

    /// Fills the accumulator buffer, if any.
    pub(super) fn reduce_prologue(&mut self, job: &Job) {
        if let Some(acc) = job.acc {
            self.fill(job.kind, acc, self.sizes.len(job.kept));
        }
    }

    /// The loops from level `from` on (`env` is at that level, its values not yet computed).
    pub(super) fn reduce_body(&mut self, job: &Job, from: usize, env: Env) {
        let nest = &job.nest;
        if let Some(suffix) = job.suffix {
            self.reduce_in_registers(job, from, suffix, env);
        } else if let Some(acc) = job.acc {
            let (kind, x, kept) = (job.kind, job.x, job.kept);
            self.run_from(nest, from, env, &mut |cx, nest, env, mode, carried| {
                // No overlapping vector here (`nest.overlap` is false): every lane is fresh.
                let parts = cx.contribution(kind, mode, env.vals[&x]);
                let offset = env.offset(nest, kept);
                cx.add_into(kind, mode, acc, offset, &parts);
                carried
            });
        }
    }

    /// Turns the accumulator buffer, if any, into the results.
    pub(super) fn reduce_epilogue(&mut self, job: &Job) {
        if let Some(acc) = job.acc {
            self.finish_buffer(job, acc);
        }
    }

    /// Loops `suffix..` (all reduced) accumulate in registers; their total is the result, or
    /// is added into the accumulator buffer when outer loops are reduced too.
    fn reduce_in_registers(&mut self, job: &Job, from: usize, suffix: usize, env: Env) {
        let nest = &job.nest;
        let n = nest.depth();
        self.walk_to(nest, from, suffix, env, Vec::new(), &mut |cx, env, carried| {
            let state = cx.initial(job.kind);
            let state = cx.walk_to(nest, suffix, n - 1, env.clone(), state, &mut |cx, env, state| {
                cx.innermost(nest, env, state, &mut |cx, _, env, mode, state| {
                    let x = cx.fresh_only(job.kind, env, env.vals[&job.x]);
                    cx.accumulate(job.kind, mode, x, state)
                })
            });
            let total = cx.total(job.kind, state, nest.has_scalars());
            let offset = env.offset(nest, job.kept);
            match job.acc {
                Some(acc) => cx.add_into(job.kind, Mode::Scalar, acc, offset, &[total]),
                None => {
                    let result = cx.finish(job.op, total, job.count);
                    cx.store(Mode::Scalar, result, job.dst, offset, 4);
                }
            }
            carried
        });
    }

    /// The results from the accumulator buffer.
    fn finish_buffer(&mut self, job: &Job, acc: Value) {
        let len = self.sizes.len(job.kept);
        self.counted(0, len, 1, Vec::new(), |cx, i, carried| {
            let flags = MemFlagsData::trusted();
            let addr = cx.address(acc, i, job.kind.width());
            let total = match job.kind {
                Kind::Wide { .. } => cx.b.ins().load(types::F64, flags, addr, 0),
                Kind::Extreme { .. } => cx.b.ins().load(types::F32, flags, addr, 0),
            };
            let result = cx.finish(job.op, total, job.count);
            cx.store(Mode::Scalar, result, job.dst, i, 4);
            carried
        });
    }

    /// The identity of the accumulation, as a scalar and as a vector.
    fn neutral(&mut self, kind: Kind) -> (Value, Value) {
        match kind {
            Kind::Wide { .. } => {
                // -0 is the identity of addition (and what Rust's `Sum` starts from).
                let zero = self.b.ins().f64const(-0.0);
                (zero, self.b.ins().splat(types::F64X2, zero))
            }
            Kind::Extreme { max } => {
                let start = if max { f32::NEG_INFINITY } else { f32::INFINITY };
                let start = self.b.ins().f32const(start);
                (start, self.b.ins().splat(types::F32X4, start))
            }
        }
    }

    /// `v` where its lanes are fresh (see `Env::fresh`), else the identity of the accumulation,
    /// so that lanes an earlier vector added are not added twice. (For `norm`, -0 squared adds
    /// +0 to sums of squares, which are +0 or more by then: exact too.)
    fn fresh_only(&mut self, kind: Kind, env: &Env, v: Value) -> Value {
        let Some(fresh) = env.fresh else { return v };
        let identity = match kind {
            Kind::Wide { .. } => -0.0,
            Kind::Extreme { max: true } => f32::NEG_INFINITY,
            Kind::Extreme { max: false } => f32::INFINITY,
        };
        let identity = self.fconst(Mode::Vector, identity);
        self.b.ins().bitselect(fresh, v, identity)
    }

    fn fill(&mut self, kind: Kind, acc: Value, len: usize) {
        let (scalar, _) = self.neutral(kind);
        self.counted(0, len, 1, Vec::new(), |cx, i, carried| {
            cx.store(Mode::Scalar, scalar, acc, i, kind.width());
            carried
        });
    }

    /// Register state: `[lo, hi, tail]` (f64x2, f64x2, f64) or `[lanes, tail]` (f32x4, f32).
    fn initial(&mut self, kind: Kind) -> Vec<Value> {
        let (scalar, vector) = self.neutral(kind);
        match kind {
            Kind::Wide { .. } => vec![vector, vector, scalar],
            Kind::Extreme { .. } => vec![vector, scalar],
        }
    }

    /// What a value adds to a sum: `[f64]` for a scalar, `[lo, hi]` (f64x2) for four lanes; the
    /// f32 value itself for `max`/`min`.
    fn contribution(&mut self, kind: Kind, mode: Mode, v: Value) -> Vec<Value> {
        let Kind::Wide { squares } = kind else {
            return vec![v];
        };
        let parts = match mode {
            Mode::Scalar => vec![self.b.ins().fpromote(types::F64, v)],
            Mode::Vector => {
                let lo = self.b.ins().fvpromote_low(v);
                let high = self.high_half(v);
                vec![lo, self.b.ins().fvpromote_low(high)]
            }
        };
        if squares {
            parts.into_iter().map(|p| self.b.ins().fmul(p, p)).collect()
        } else {
            parts
        }
    }

    /// Lanes 2 and 3 of an f32x4 moved to lanes 0 and 1.
    fn high_half(&mut self, v: Value) -> Value {
        let little = MemFlagsData::new().with_endianness(Endianness::Little);
        let bytes = self.b.ins().bitcast(types::I8X16, little, v);
        let order: Vec<u8> = (8..16).chain(8..16).collect();
        let mask = self.b.func.dfg.immediates.push(ConstantData::from(order));
        let moved = self.b.ins().shuffle(bytes, bytes, mask);
        self.b.ins().bitcast(types::F32X4, little, moved)
    }

    fn combine(&mut self, kind: Kind, a: Value, b: Value) -> Value {
        match kind {
            Kind::Wide { .. } => self.b.ins().fadd(a, b),
            Kind::Extreme { max } => {
                let mode = if self.b.func.dfg.value_type(a).is_vector() {
                    Mode::Vector
                } else {
                    Mode::Scalar
                };
                self.extreme(mode, max, a, b)
            }
        }
    }

    fn accumulate(&mut self, kind: Kind, mode: Mode, v: Value, mut state: Vec<Value>) -> Vec<Value> {
        let parts = self.contribution(kind, mode, v);
        let slots: &[usize] = match (kind, mode) {
            (Kind::Wide { .. }, Mode::Vector) => &[0, 1],
            (Kind::Wide { .. }, Mode::Scalar) => &[2],
            (Kind::Extreme { .. }, Mode::Vector) => &[0],
            (Kind::Extreme { .. }, Mode::Scalar) => &[1],
        };
        for (&slot, part) in slots.iter().zip(parts) {
            state[slot] = self.combine(kind, state[slot], part);
        }
        state
    }

    /// Reduces the register state to one scalar (f64 or f32). Sums add their two vectors, then
    /// the two lanes (a short chain: the result is awaited by the next stage); `tail` says
    /// whether the scalar slot took any value.
    fn total(&mut self, kind: Kind, state: Vec<Value>, tail: bool) -> Value {
        if let Kind::Wide { .. } = kind {
            let both = self.b.ins().fadd(state[0], state[1]);
            let low = self.b.ins().extractlane(both, 0);
            let high = self.b.ins().extractlane(both, 1);
            let lanes = self.b.ins().fadd(low, high);
            return if tail {
                self.b.ins().fadd(state[2], lanes)
            } else {
                lanes
            };
        }
        let mut total = state[1];
        for lane in 0..4 {
            let value = self.b.ins().extractlane(state[0], lane);
            total = self.combine(kind, total, value);
        }
        total
    }

    /// `acc[offset..] ⊕= parts` (one scalar, or the two f64x2 / one f32x4 of four lanes).
    fn add_into(&mut self, kind: Kind, mode: Mode, acc: Value, offset: Value, parts: &[Value]) {
        let addr = self.address(acc, offset, kind.width());
        let flags = match mode {
            Mode::Scalar => MemFlagsData::trusted(),
            Mode::Vector => MemFlagsData::new().with_notrap(),
        };
        for (i, &part) in parts.iter().enumerate() {
            let ty: Type = self.b.func.dfg.value_type(part);
            let at = 16 * i as i32;
            let old = self.b.ins().load(ty, flags, addr, at);
            let new = self.combine(kind, old, part);
            self.b.ins().store(flags, new, addr, at);
        }
    }

    /// The f32 result from an accumulated total.
    fn finish(&mut self, op: ReduceOp, total: Value, count: f64) -> Value {
        let total = match op {
            ReduceOp::Mean => {
                let n = self.b.ins().f64const(Ieee64::with_float(count));
                self.b.ins().fdiv(total, n)
            }
            ReduceOp::Norm => self.b.ins().sqrt(total),
            _ => total,
        };
        if self.b.func.dfg.value_type(total) == types::F64 {
            self.b.ins().fdemote(types::F32, total)
        } else {
            total
        }
    }
}

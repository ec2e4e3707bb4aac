//! Elementwise values, as scalars (f32) or four lanes (f32x4), with the semantics of
//! `crate::ops`: comparisons give 1.0 or 0.0, `min`/`max` propagate NaN and break ties like
//! Rust's, `relu` keeps NaN, and `exp`, `log`, `pow`, `tanh` call the linked libm functions
//! lane by lane.

use super::emit::Cx;
use super::nest::{is_load, Env, Mode, Nest};
use crate::ir::{NodeId, Op};
use crate::ops::{BinaryOp, UnaryOp};
use cranelift_codegen::ir::{condcodes::FloatCC, types, InstBuilder, MemFlagsData, Value};

impl Cx<'_, '_> {
    /// The value of `id` at the current point of the nest (its operands are known).
    pub fn value(&mut self, nest: &Nest, env: &Env, mode: Mode, id: NodeId) -> Value {
        let node = *self.kernel.node(id);
        if is_load(self.kernel, self.plan, nest.root, id) {
            let place = self.place(id).expect("a loaded node is materialized");
            let base = self.base(place);
            let offset = env.offset(nest, node.ty);
            return self.load(mode, base, offset);
        }
        let depth = nest.depth();
        let operand = |id: NodeId| {
            if mode == Mode::Vector && nest.level(id) < depth {
                env.splats[&id]
            } else {
                env.vals[&id]
            }
        };
        match node.op {
            Op::Const(c) => self.fconst(mode, c),
            Op::Unary(f, x) => {
                let x = operand(x);
                self.unary(mode, f, x)
            }
            Op::Binary(f, a, b) => {
                let (a, b) = (operand(a), operand(b));
                self.binary(mode, f, a, b)
            }
            Op::Select(c, a, b) => {
                let (a, b) = (operand(a), operand(b));
                let mask = match self.comparison(nest, mode, c) {
                    Some((cc, x, y)) => self.b.ins().fcmp(cc, operand(x), operand(y)),
                    None => {
                        let zero = self.fconst(mode, 0.0);
                        self.b.ins().fcmp(FloatCC::NotEqual, operand(c), zero)
                    }
                };
                self.choose(mode, mask, a, b)
            }
            _ => unreachable!("a stage computes only elementwise nodes and constants"),
        }
    }

    /// When the condition `c` of a select is a comparison this nest computes where the select
    /// is, the comparison and its operands: the select then uses the comparison's mask instead
    /// of testing its 1.0/0.0 value against zero (the same choice, two instructions fewer).
    fn comparison(&self, nest: &Nest, mode: Mode, c: NodeId) -> Option<(FloatCC, NodeId, NodeId)> {
        if is_load(self.kernel, self.plan, nest.root, c)
            || (mode == Mode::Vector && nest.level(c) < nest.depth())
        {
            return None;
        }
        let Op::Binary(f, x, y) = self.kernel.node(c).op else {
            return None;
        };
        Some((condition(f)?, x, y))
    }

    pub fn load(&mut self, mode: Mode, base: Value, offset: Value) -> Value {
        let addr = self.address(base, offset, 4);
        let flags = match mode {
            Mode::Scalar => MemFlagsData::trusted(),
            Mode::Vector => MemFlagsData::new().with_notrap(),
        };
        self.b.ins().load(mode.f32(), flags, addr, 0)
    }

    pub fn fconst(&mut self, mode: Mode, c: f32) -> Value {
        let scalar = self.b.ins().f32const(c);
        match mode {
            Mode::Scalar => scalar,
            Mode::Vector => self.b.ins().splat(types::F32X4, scalar),
        }
    }

    /// `mask ? a : b`, the mask from `fcmp` (an i8 for scalars, i32x4 lanes for vectors).
    pub fn choose(&mut self, mode: Mode, mask: Value, a: Value, b: Value) -> Value {
        match mode {
            Mode::Scalar => self.b.ins().select(mask, a, b),
            Mode::Vector => {
                let mask = self.b.ins().bitcast(types::F32X4, MemFlagsData::new(), mask);
                self.b.ins().bitselect(mask, a, b)
            }
        }
    }

    /// 1.0 where the mask is set, else 0.0.
    fn truth(&mut self, mode: Mode, mask: Value) -> Value {
        let one = self.fconst(mode, 1.0);
        let zero = self.fconst(mode, 0.0);
        self.choose(mode, mask, one, zero)
    }

    fn unary(&mut self, mode: Mode, f: UnaryOp, x: Value) -> Value {
        match f {
            UnaryOp::Neg => self.b.ins().fneg(x),
            UnaryOp::Abs => self.b.ins().fabs(x),
            UnaryOp::Sqrt => self.b.ins().sqrt(x),
            UnaryOp::Relu => {
                let zero = self.fconst(mode, 0.0);
                let negative = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
                self.choose(mode, negative, zero, x)
            }
            UnaryOp::Sign => {
                let zero = self.fconst(mode, 0.0);
                let one = self.fconst(mode, 1.0);
                let minus_one = self.fconst(mode, -1.0);
                let signed_zero = self.b.ins().fmul(x, zero);
                let negative = self.b.ins().fcmp(FloatCC::LessThan, x, zero);
                let below = self.choose(mode, negative, minus_one, signed_zero);
                let positive = self.b.ins().fcmp(FloatCC::GreaterThan, x, zero);
                self.choose(mode, positive, one, below)
            }
            UnaryOp::Exp => self.libm(mode, "expf", &[x]),
            UnaryOp::Log => self.libm(mode, "logf", &[x]),
            UnaryOp::Tanh => self.libm(mode, "tanhf", &[x]),
            UnaryOp::Sigmoid => {
                // 1 / (1 + exp(-x)), as `UnaryOp::apply` computes it.
                let minus = self.b.ins().fneg(x);
                let e = self.libm(mode, "expf", &[minus]);
                let one = self.fconst(mode, 1.0);
                let denominator = self.b.ins().fadd(one, e);
                self.b.ins().fdiv(one, denominator)
            }
        }
    }

    fn binary(&mut self, mode: Mode, f: BinaryOp, a: Value, b: Value) -> Value {
        match f {
            BinaryOp::Add => return self.b.ins().fadd(a, b),
            BinaryOp::Sub => return self.b.ins().fsub(a, b),
            BinaryOp::Mul => return self.b.ins().fmul(a, b),
            BinaryOp::Div => return self.b.ins().fdiv(a, b),
            BinaryOp::Min => return self.extreme(mode, false, a, b),
            BinaryOp::Max => return self.extreme(mode, true, a, b),
            BinaryOp::Pow => return self.libm(mode, "powf", &[a, b]),
            _ => {}
        }
        let mask = match condition(f) {
            Some(cc) => self.b.ins().fcmp(cc, a, b),
            None => {
                // Any non-zero value (NaN included) is true.
                let zero = self.fconst(mode, 0.0);
                let a = self.b.ins().fcmp(FloatCC::NotEqual, a, zero);
                let b = self.b.ins().fcmp(FloatCC::NotEqual, b, zero);
                if f == BinaryOp::And {
                    self.b.ins().band(a, b)
                } else {
                    self.b.ins().bor(a, b)
                }
            }
        };
        self.truth(mode, mask)
    }

    /// `max(a, b)` (or `min`) exactly as Rust's `f32::max` after the NaN check of
    /// `BinaryOp::apply`: NaN if either is NaN, else `b` if it is larger, else `a` (so of two
    /// zeros, the first one's sign). Cranelift's `fmax` would prefer +0.
    pub fn extreme(&mut self, mode: Mode, max: bool, a: Value, b: Value) -> Value {
        let cc = if max {
            FloatCC::GreaterThan
        } else {
            FloatCC::LessThan
        };
        let better = self.b.ins().fcmp(cc, b, a);
        let picked = self.choose(mode, better, b, a);
        let unordered = self.b.ins().fcmp(FloatCC::Unordered, a, b);
        let nan = self.b.ins().fadd(a, b);
        self.choose(mode, unordered, nan, picked)
    }

    /// Calls a scalar libm function, once per lane for vectors.
    fn libm(&mut self, mode: Mode, name: &'static str, args: &[Value]) -> Value {
        let func = self.func(name);
        if mode == Mode::Scalar {
            let call = self.b.ins().call(func, args);
            return self.b.inst_results(call)[0];
        }
        let mut result = None;
        for lane in 0..4u8 {
            let lane_args: Vec<Value> = args.iter().map(|a| self.b.ins().extractlane(*a, lane)).collect();
            let call = self.b.ins().call(func, &lane_args);
            let value = self.b.inst_results(call)[0];
            result = Some(match result {
                None => self.b.ins().splat(types::F32X4, value),
                Some(vector) => self.b.ins().insertlane(vector, value, lane),
            });
        }
        result.expect("four lanes")
    }
}

/// The condition code of a comparison operator; `None` for the others.
fn condition(f: BinaryOp) -> Option<FloatCC> {
    Some(match f {
        BinaryOp::Eq => FloatCC::Equal,
        BinaryOp::Ne => FloatCC::NotEqual,
        BinaryOp::Lt => FloatCC::LessThan,
        BinaryOp::Le => FloatCC::LessThanOrEqual,
        BinaryOp::Gt => FloatCC::GreaterThan,
        BinaryOp::Ge => FloatCC::GreaterThanOrEqual,
        _ => return None,
    })
}

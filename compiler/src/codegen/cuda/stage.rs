//! The body of a kernel: a loop over the block's images, one stage per reduction (in node order,
//! each ending with `__syncthreads()`, those of the channel phase inside its loop over channel
//! blocks: blocks.rs), then the output stage. Inside a stage every value an element needs is a
//! named `float` computed at that element's index (`i_c, i_k, i_d, i_h, i_w`): inputs are read
//! from global memory (in the channel phase, staged ones from shared memory), reductions from
//! scratch, the rest is elementwise.

use super::schedule::Channels;
use super::{size_expr, Slot};
use crate::axes::{Axis, AxisSet};
use crate::ir::{InputKind, Kernel, NodeId, Op};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};
use std::fmt::Write;

/// One slice of a block's scratch memory: the name of its pointer and what it holds.
pub(super) struct Slice {
    pub(super) name: String,
    pub(super) slot: Slot,
}

/// The block's scratch slices in order: the f64 accumulators first (8-byte aligned, as each
/// block's slice is), then each reduction's result, then the map being post-processed.
pub(super) fn layout(kernel: &Kernel, scratch: &[NodeId], channels: Option<&Channels>) -> Vec<Slice> {
    let mut slices = Vec::new();
    if let Some(channels) = channels {
        for &id in channels
            .phase
            .iter()
            .filter(|&&id| channels.accumulates(kernel, id))
        {
            slices.push(Slice {
                name: format!("acc{}", id.0),
                slot: Slot::Accumulator(kernel.node(id).ty),
            });
        }
    }
    for &id in scratch {
        slices.push(Slice {
            name: format!("s{}", id.0),
            slot: super::slot(kernel, id),
        });
    }
    if super::scalable(kernel) {
        // The raw map of the image being post-processed in the kernel.
        slices.push(Slice {
            name: "map".into(),
            slot: Slot::Values(kernel.output_ty()),
        });
    }
    slices
}

/// Writes `camc_body`, the template every entry point calls.
pub fn body(
    out: &mut String,
    kernel: &Kernel,
    scratch: &[NodeId],
    channels: Option<&Channels>,
    layout: &[Slice],
) {
    let n = kernel.inputs.len();
    if n > 0 {
        let params: Vec<String> = (0..n).map(|i| format!("typename T{i}")).collect();
        let _ = writeln!(out, "template <{}>", params.join(", "));
    }
    let inputs: String = (0..n)
        .map(|i| format!("const T{i}* __restrict__ in{i}, "))
        .collect();
    let _ = writeln!(
        out,
        "__device__ __forceinline__ void camc_body(\n    {inputs}float* __restrict__ out, float* __restrict__ scratch, int* __restrict__ bad,\n    int n, int c, int k, int d, int h, int w, int out_h, int out_w) {{"
    );
    out.push_str("    __shared__ double camc_red[2 * CAMC_THREADS];\n");
    if channels.is_some() {
        out.push_str("    __shared__ camc_stage_buffer camc_stage_values;\n");
        out.push_str("    float* const camc_st = camc_stage_values.v;\n");
    }
    out.push_str("    const int C = c, K = k, D = d, H = h, W = w;\n");
    let sizes: Vec<String> = layout.iter().map(|slice| slice.slot.c_size()).collect();
    let total = if sizes.is_empty() {
        "0".into()
    } else {
        sizes.join(" + ")
    };
    let _ = writeln!(out, "    const long long camc_slice = {total};");
    out.push_str("    float* const s = scratch + (long long)blockIdx.x * (camc_slice + (camc_slice & 1));\n");
    let mut at = String::from("0");
    for (slice, size) in layout.iter().zip(&sizes) {
        let _ = match slice.slot {
            Slot::Accumulator(_) => {
                writeln!(out, "    double* const {} = (double*)(s + {at});", slice.name)
            }
            _ => writeln!(out, "    float* const {} = s + {at};", slice.name),
        };
        at = format!("{at} + {size}");
    }
    out.push_str("    for (long long img = blockIdx.x; img < n; img += gridDim.x) {\n");
    for (i, input) in kernel.inputs.iter().enumerate() {
        let _ = match input.kind {
            InputKind::PerImage => writeln!(
                out,
                "        const T{i}* const x{i} = in{i} + img * ({});",
                size_expr(input.ty)
            ),
            InputKind::Shared => writeln!(out, "        const T{i}* const x{i} = in{i};  // shared"),
        };
    }
    let writer = Stages {
        kernel,
        scratch,
        staged: channels.map_or(&[], |c| c.staged.as_slice()),
    };
    match channels {
        None => {
            for &id in scratch {
                writer.stage(out, id, Role::Whole);
            }
        }
        Some(channels) => {
            for &id in &channels.early {
                writer.stage(out, id, Role::Whole);
            }
            writer.channel_phase(out, channels);
            for &id in &channels.late {
                writer.stage(out, id, Role::Whole);
            }
        }
    }
    writer.output(out, super::scalable(kernel));
    out.push_str("        __syncthreads();\n    }\n}\n");
}

/// How a reduction stage covers the channels: all at once, or one block of them in the
/// channel phase (`k0`, `kn`: the block's first channel and its count), keeping `k` (a result per
/// channel of the block) or reducing it (added to the accumulator).
#[derive(Copy, Clone, PartialEq)]
pub(super) enum Role {
    Whole,
    PerChannel,
    Across,
}

pub(super) struct Stages<'a> {
    pub(super) kernel: &'a Kernel,
    pub(super) scratch: &'a [NodeId],
    /// Inputs the channel phase reads from shared memory.
    pub(super) staged: &'a [u32],
}

pub(super) const IN: &str = "            ";
pub(super) const IN2: &str = "                ";

impl Stages<'_> {
    /// The stage of scratch node `id` (a reduction or `pc1`).
    fn stage(&self, out: &mut String, id: NodeId, role: Role) {
        match self.kernel.node(id).op {
            Op::Reduce(op, axes, x) => self.reduce(out, id, (op, axes, x), role),
            Op::Pc1(axis, x) => self.pc1(out, id, axis, x),
            _ => {}
        }
    }

    /// One reduction: its outputs in rounds of `P`, a group of `g` threads per output.
    pub(super) fn reduce(
        &self,
        out: &mut String,
        id: NodeId,
        (op, axes, x): (ReduceOp, AxisSet, NodeId),
        role: Role,
    ) {
        let xty = self.kernel.node(x).ty;
        let kept = xty.minus(axes);
        let k_size = if role == Role::Whole { "K" } else { "kn" };
        // The reduced values of one output are contiguous when every reduced axis is inside
        // every kept one (canonical order k, d, h, w).
        let inner = kept.iter().all(|a| axes.iter().all(|r| r > a));
        let (init, join) = reduce_start(op);
        let _ = writeln!(
            out,
            "        {{ // %{} = {}{axes}(%{}): {xty} -> {kept}",
            id.0,
            op.name(),
            x.0
        );
        let _ = writeln!(
            out,
            "{IN}const int O = {}, R = {}, RT = {};",
            size_with(kept, k_size),
            size_with(axes, k_size),
            size_expr(axes)
        );
        let _ = writeln!(out, "{IN}const bool inner = {inner};");
        let _ = writeln!(out, "{IN}const camc_split sp = camc_split_for(O, R, inner);");
        let _ = writeln!(out, "{IN}for (int base = 0; base < O; base += sp.p) {{");
        let _ = writeln!(out, "{IN}    const int o = base + sp.slot;");
        let _ = writeln!(out, "{IN}    double a0 = {init}, a1 = 0.0;");
        let _ = writeln!(out, "{IN}    if (o < O && sp.lane < sp.g) {{");
        // Unrolled so that global loads overlap; in the channel phase the values are in shared
        // memory, whose short latency needs no unrolling, and unrolled loops spilled registers
        // there (Grad-CAM++: 228 bytes of spill loads at 512 threads, none without).
        let unroll = if role == Role::Whole {
            "#pragma unroll 4"
        } else {
            "#pragma unroll 1"
        };
        let _ = writeln!(
            out,
            "{IN}        {unroll}\n{IN}        for (int r = sp.lane; r < R; r += sp.g) {{"
        );
        let indent = format!("{IN2}        ");
        declare(out, &indent, xty);
        decompose_with(out, &indent, "o", kept, k_size);
        decompose_with(out, &indent, "r", axes, k_size);
        if role != Role::Whole {
            let _ = writeln!(out, "{indent}i_k += k0;");
        }
        let v = self.values_in(out, &indent, x, role != Role::Whole);
        let step = match op {
            ReduceOp::Sum | ReduceOp::Mean => format!("a0 += (double){v};"),
            ReduceOp::Norm => format!("a0 += (double){v} * (double){v};"),
            ReduceOp::Std => format!("a0 += (double){v}; a1 += (double){v} * (double){v};"),
            ReduceOp::Max | ReduceOp::Min => format!("a0 = camc_join<{join}>(a0, (double){v});"),
        };
        let _ = writeln!(out, "{indent}{step}\n{IN2}    }}\n{IN}    }}");
        let store = match role {
            Role::Whole => format!("s{}[o] = (float)({});", id.0, reduce_finish(op)),
            Role::PerChannel => format!(
                "s{}[k0 * ({}) + o] = (float)({});",
                id.0,
                size_expr(kept.minus(AxisSet::SCALAR.with(Axis::K))),
                reduce_finish(op)
            ),
            Role::Across => format!(
                "acc{0}[2 * o] = camc_join<{join}>(acc{0}[2 * o], a0); acc{0}[2 * o + 1] += a1;",
                id.0
            ),
        };
        self.combine(out, join, op == ReduceOp::Std, &store);
        let _ = writeln!(out, "{IN}}}\n            __syncthreads();\n        }}");
    }

    /// Joins the group's partial results (shuffles for an inner group of a warp or less, else
    /// through shared memory); the group's first lane then runs `store`.
    fn combine(&self, out: &mut String, join: u8, two: bool, store: &str) {
        let _ = writeln!(out, "{IN}    if (inner && sp.g <= 32) {{");
        let _ = writeln!(out, "{IN2}    a0 = camc_warp_join<{join}>(a0, sp.g);");
        if two {
            let _ = writeln!(out, "{IN2}    a1 = camc_warp_join<0>(a1, sp.g);");
        }
        let _ = writeln!(out, "{IN2}    if (o < O && sp.lane == 0) {{ {store} }}");
        let _ = writeln!(out, "{IN}    }} else {{");
        let _ = writeln!(out, "{IN2}    camc_red[threadIdx.x] = a0;");
        let _ = writeln!(out, "{IN2}    camc_red[CAMC_THREADS + threadIdx.x] = a1;");
        let _ = writeln!(out, "{IN2}    __syncthreads();");
        let _ = writeln!(out, "{IN2}    if (o < O && sp.lane == 0) {{");
        let _ = writeln!(out, "{IN2}        for (int m = 1; m < sp.g; ++m) {{");
        let _ = writeln!(out, "{IN2}            const int t = camc_member(sp, inner, m);");
        let _ = writeln!(out, "{IN2}            a0 = camc_join<{join}>(a0, camc_red[t]);");
        let _ = writeln!(out, "{IN2}            a1 += camc_red[CAMC_THREADS + t];");
        let _ = writeln!(out, "{IN2}        }}");
        let _ = writeln!(out, "{IN2}        {store}");
        let _ = writeln!(out, "{IN2}    }}");
        let _ = writeln!(out, "{IN2}    __syncthreads();");
        let _ = writeln!(out, "{IN}    }}");
    }

    /// The output stage: every element of the output type, grid-strided over the block. When
    /// `scaled`, a call with `out_h > 0` writes the map to scratch and post-processes it into
    /// `out` (docs/run.md).
    fn output(&self, out: &mut String, scaled: bool) {
        let ty = self.kernel.output_ty();
        let _ = writeln!(out, "        {{ // output {ty}");
        let raw = format!("out + img * ({})", size_expr(ty));
        if scaled {
            let _ = writeln!(out, "{IN}float* const y = out_h > 0 ? map : {raw};");
        } else {
            let _ = writeln!(out, "{IN}float* const y = {raw};");
        }
        let _ = writeln!(
            out,
            "{IN}for (int e = threadIdx.x; e < {}; e += CAMC_THREADS) {{",
            size_expr(ty)
        );
        declare(out, IN2, ty);
        decompose(out, IN2, "e", ty);
        let v = self.values(out, IN2, self.kernel.output);
        let _ = writeln!(out, "{IN2}y[e] = {v};\n{IN}}}");
        if scaled {
            let _ = writeln!(out, "{IN}if (out_h > 0) {{");
            let _ = writeln!(out, "{IN}    __syncthreads();");
            let _ = writeln!(
                out,
                "{IN}    camc_scale_image(map, out + img * out_h * (long long)out_w, bad ? bad + img : nullptr, H, W, out_h, out_w, camc_red);"
            );
            let _ = writeln!(out, "{IN}}}");
        }
        let _ = writeln!(out, "        }}");
    }

    /// Writes the statements that compute `root` at the current index; returns its name.
    pub(super) fn values(&self, out: &mut String, indent: &str, root: NodeId) -> String {
        self.values_in(out, indent, root, false)
    }

    /// [`Self::values`]; `in_phase`: inside the channel phase, where staged inputs are read
    /// from shared memory.
    fn values_in(&self, out: &mut String, indent: &str, root: NodeId, in_phase: bool) -> String {
        let mut needed = vec![false; self.kernel.nodes.len()];
        needed[root.index()] = true;
        for id in (0..self.kernel.nodes.len() as u32).rev().map(NodeId) {
            if needed[id.index()] && !self.scratch.contains(&id) {
                for operand in self.kernel.node(id).op.operands() {
                    needed[operand.index()] = true;
                }
            }
        }
        for id in self.kernel.ids().filter(|id| needed[id.index()]) {
            let expr = self.expr(id, in_phase);
            let _ = writeln!(out, "{indent}const float v{} = {expr};", id.0);
        }
        format!("v{}", root.0)
    }

    fn expr(&self, id: NodeId, in_phase: bool) -> String {
        let node = self.kernel.node(id);
        if self.scratch.contains(&id) {
            return format!("s{}[{}]", id.0, offset(node.ty));
        }
        match node.op {
            Op::Input(i) if in_phase && self.staged.contains(&i) => {
                let ty = self.kernel.inputs[i as usize].ty;
                format!(
                    "(camc_staged ? camc_st[st{i} + {}] : camc_ld(x{i}[{}]))",
                    offset_with(ty, "(i_k - k0)"),
                    offset(ty)
                )
            }
            Op::Input(i) => format!("camc_ld(x{i}[{}])", offset(self.kernel.inputs[i as usize].ty)),
            Op::Const(c) => float(c),
            Op::Unary(f, x) => unary(f, &format!("v{}", x.0)),
            Op::Binary(f, a, b) => binary(f, &format!("v{}", a.0), &format!("v{}", b.0)),
            Op::Select(c, a, b) => format!("(v{} != 0.0f ? v{} : v{})", c.0, a.0, b.0),
            Op::Index(axis) => format!("(float)i_{axis}"),
            Op::Size(axes) => format!("(float)({})", size_expr(axes)),
            // Expanded away before the writer runs, or kept in scratch.
            Op::Reduce(..) | Op::Softmax(..) | Op::Normalize(..) | Op::Pc1(..) => {
                format!("CAMC_NAN_F /* unexpected %{} */", id.0)
            }
        }
    }
}

pub(super) fn declare(out: &mut String, indent: &str, ty: AxisSet) {
    let names: Vec<String> = ty.iter().map(|a| format!("i_{a}")).collect();
    if !names.is_empty() {
        let _ = writeln!(out, "{indent}int {};", names.join(", "));
    }
}

/// Splits the flat index `flat` of a tensor typed `ty` into its axis indices.
pub(super) fn decompose(out: &mut String, indent: &str, flat: &str, ty: AxisSet) {
    decompose_with(out, indent, flat, ty, "K");
}

/// [`decompose`] where the `k` axis has `k_size` elements.
fn decompose_with(out: &mut String, indent: &str, flat: &str, ty: AxisSet, k_size: &str) {
    let axes: Vec<Axis> = ty.iter().collect();
    match axes.len() {
        0 => {}
        1 => {
            let _ = writeln!(out, "{indent}i_{} = {flat};", axes[0]);
        }
        _ => {
            let _ = write!(out, "{indent}{{ int t = {flat};");
            for (i, a) in axes.iter().enumerate().rev() {
                if i == 0 {
                    let _ = write!(out, " i_{a} = t;");
                } else {
                    let size = axis_size(*a, k_size);
                    let _ = write!(out, " i_{a} = t % {size}; t /= {size};");
                }
            }
            out.push_str(" }\n");
        }
    }
}

fn axis_size(axis: Axis, k_size: &str) -> String {
    if axis == Axis::K {
        k_size.to_string()
    } else {
        axis.name().to_uppercase()
    }
}

/// [`size_expr`] where the `k` axis has `k_size` elements.
fn size_with(ty: AxisSet, k_size: &str) -> String {
    let parts: Vec<String> = ty.iter().map(|a| axis_size(a, k_size)).collect();
    if parts.is_empty() {
        "1".into()
    } else {
        parts.join("*")
    }
}

/// How a reduction starts: its accumulator's initial value, and how partial results join
/// (`camc_join`'s 0 adds, 1 takes the maximum, 2 the minimum).
pub(super) fn reduce_start(op: ReduceOp) -> (&'static str, u8) {
    match op {
        ReduceOp::Max => ("-CAMC_INF", 1),
        ReduceOp::Min => ("CAMC_INF", 2),
        _ => ("0.0", 0),
    }
}

/// The result of a reduction of `RT` values from its accumulators `a0`, `a1`, in C.
pub(super) fn reduce_finish(op: ReduceOp) -> &'static str {
    match op {
        ReduceOp::Sum => "a0",
        ReduceOp::Mean => "a0 / (double)RT",
        ReduceOp::Norm => "sqrt(a0)",
        ReduceOp::Std => "sqrt(fmax(a1 / (double)RT - (a0 / (double)RT) * (a0 / (double)RT), 0.0))",
        ReduceOp::Max | ReduceOp::Min => "(RT == 0 ? CAMC_NAN : a0)",
    }
}

/// The offset of the current index in a tensor typed `ty` (row-major, canonical order).
pub(super) fn offset(ty: AxisSet) -> String {
    offset_with(ty, "i_k")
}

/// [`offset`] with `k_index` for the index along `k`.
fn offset_with(ty: AxisSet, k_index: &str) -> String {
    let index = |a: Axis| {
        if a == Axis::K {
            k_index.to_string()
        } else {
            format!("i_{a}")
        }
    };
    let mut expr = String::new();
    for a in ty.iter() {
        expr = if expr.is_empty() {
            index(a)
        } else {
            format!("({expr}) * {} + {}", a.name().to_uppercase(), index(a))
        };
    }
    if expr.is_empty() {
        "0".into()
    } else {
        expr
    }
}

/// A float literal that round-trips (`1e-6f`); non-finite values by their bits.
fn float(c: f32) -> String {
    if c.is_finite() {
        let text = format!("{c:e}f");
        if c < 0.0 {
            format!("({text})")
        } else {
            text
        }
    } else {
        format!("__int_as_float(0x{:08x})", c.to_bits())
    }
}

fn unary(f: UnaryOp, x: &str) -> String {
    match f {
        UnaryOp::Neg => format!("-{x}"),
        UnaryOp::Relu => format!("({x} < 0.0f ? 0.0f : {x})"),
        UnaryOp::Abs => format!("fabsf({x})"),
        UnaryOp::Sign => format!("camc_sign({x})"),
        UnaryOp::Exp => format!("expf({x})"),
        UnaryOp::Log => format!("logf({x})"),
        UnaryOp::Sqrt => format!("sqrtf({x})"),
        UnaryOp::Sigmoid => format!("1.0f / (1.0f + expf(-{x}))"),
        UnaryOp::Tanh => format!("tanhf({x})"),
    }
}

fn binary(f: BinaryOp, a: &str, b: &str) -> String {
    let truth = |op: &str| format!("({a} {op} {b} ? 1.0f : 0.0f)");
    match f {
        BinaryOp::Add => format!("{a} + {b}"),
        BinaryOp::Sub => format!("{a} - {b}"),
        BinaryOp::Mul => format!("{a} * {b}"),
        BinaryOp::Div => format!("{a} / {b}"),
        BinaryOp::Pow => format!("powf({a}, {b})"),
        BinaryOp::Min => format!("camc_min({a}, {b})"),
        BinaryOp::Max => format!("camc_max({a}, {b})"),
        BinaryOp::Eq => truth("=="),
        BinaryOp::Ne => truth("!="),
        BinaryOp::Lt => truth("<"),
        BinaryOp::Le => truth("<="),
        BinaryOp::Gt => truth(">"),
        BinaryOp::Ge => truth(">="),
        BinaryOp::And => format!("({a} != 0.0f && {b} != 0.0f ? 1.0f : 0.0f)"),
        BinaryOp::Or => format!("({a} != 0.0f || {b} != 0.0f ? 1.0f : 0.0f)"),
    }
}

//! The body of a kernel: a loop over the block's images, one stage per reduction (in node order,
//! each ending with `__syncthreads()`), then the output stage. Inside a stage every value an
//! element needs is a named `float` computed at that element's index (`i_c, i_k, i_d, i_h, i_w`):
//! inputs are read from global memory, reductions from scratch, the rest is elementwise.

use super::size_expr;
use crate::axes::{Axis, AxisSet};
use crate::ir::{InputKind, Kernel, NodeId, Op};
use crate::ops::{BinaryOp, ReduceOp, UnaryOp};
use std::fmt::Write;

/// Writes `camc_body`, the template every entry point calls.
pub fn body(out: &mut String, kernel: &Kernel, scratch: &[NodeId]) {
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
    out.push_str("    const int C = c, K = k, D = d, H = h, W = w;\n");
    let scaled = super::scalable(kernel);
    let mut slots: Vec<String> = scratch
        .iter()
        .map(|&id| super::slot(kernel, id).c_size())
        .collect();
    if scaled {
        // The raw map of the image being post-processed in the kernel.
        slots.push(size_expr(kernel.output_ty()));
    }
    let total = slots.clone();
    let total = if total.is_empty() {
        "0".into()
    } else {
        total.join(" + ")
    };
    let _ = writeln!(
        out,
        "    float* const s = scratch + (long long)blockIdx.x * ({total});"
    );
    let mut at = String::from("0");
    for (&id, size) in scratch.iter().zip(&slots) {
        let _ = writeln!(out, "    float* const s{} = s + {at};", id.0);
        at = format!("{at} + {size}");
    }
    if scaled {
        let _ = writeln!(out, "    float* const map = s + {at};");
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
    let writer = Stages { kernel, scratch };
    for &id in scratch {
        match kernel.node(id).op {
            Op::Reduce(op, axes, x) => writer.reduce(out, id, op, axes, x),
            Op::Pc1(axis, x) => writer.pc1(out, id, axis, x),
            _ => {}
        }
    }
    writer.output(out, scaled);
    out.push_str("        __syncthreads();\n    }\n}\n");
}

pub(super) struct Stages<'a> {
    pub(super) kernel: &'a Kernel,
    pub(super) scratch: &'a [NodeId],
}

pub(super) const IN: &str = "            ";
pub(super) const IN2: &str = "                ";

impl Stages<'_> {
    /// One reduction: its outputs in rounds of `P`, a group of `g` threads per output.
    fn reduce(&self, out: &mut String, id: NodeId, op: ReduceOp, axes: AxisSet, x: NodeId) {
        let xty = self.kernel.node(x).ty;
        let kept = xty.minus(axes);
        // The reduced values of one output are contiguous when every reduced axis is inside
        // every kept one (canonical order k, d, h, w).
        let inner = kept.iter().all(|a| axes.iter().all(|r| r > a));
        let (init, join) = match op {
            ReduceOp::Max => ("-CAMC_INF", 1),
            ReduceOp::Min => ("CAMC_INF", 2),
            _ => ("0.0", 0),
        };
        let _ = writeln!(
            out,
            "        {{ // %{} = {}{axes}(%{}): {xty} -> {kept}",
            id.0,
            op.name(),
            x.0
        );
        let _ = writeln!(
            out,
            "{IN}const int O = {}, R = {};",
            size_expr(kept),
            size_expr(axes)
        );
        let _ = writeln!(out, "{IN}const bool inner = {inner};");
        let _ = writeln!(out, "{IN}const camc_split sp = camc_split_for(O, R, inner);");
        let _ = writeln!(out, "{IN}for (int base = 0; base < O; base += sp.p) {{");
        let _ = writeln!(out, "{IN}    const int o = base + sp.slot;");
        let _ = writeln!(out, "{IN}    double a0 = {init}, a1 = 0.0;");
        let _ = writeln!(out, "{IN}    if (o < O && sp.lane < sp.g) {{");
        let _ = writeln!(
            out,
            "{IN}        #pragma unroll 4\n{IN}        for (int r = sp.lane; r < R; r += sp.g) {{"
        );
        let indent = format!("{IN2}        ");
        declare(out, &indent, xty);
        decompose(out, &indent, "o", kept);
        decompose(out, &indent, "r", axes);
        let v = self.values(out, &indent, x);
        let step = match op {
            ReduceOp::Sum | ReduceOp::Mean => format!("a0 += (double){v};"),
            ReduceOp::Norm => format!("a0 += (double){v} * (double){v};"),
            ReduceOp::Std => format!("a0 += (double){v}; a1 += (double){v} * (double){v};"),
            ReduceOp::Max | ReduceOp::Min => format!("a0 = camc_join<{join}>(a0, (double){v});"),
        };
        let _ = writeln!(out, "{indent}{step}\n{IN2}    }}\n{IN}    }}");
        let finish = match op {
            ReduceOp::Sum => "a0",
            ReduceOp::Mean => "a0 / (double)R",
            ReduceOp::Norm => "sqrt(a0)",
            ReduceOp::Std => "sqrt(fmax(a1 / (double)R - (a0 / (double)R) * (a0 / (double)R), 0.0))",
            ReduceOp::Max | ReduceOp::Min => "(R == 0 ? CAMC_NAN : a0)",
        };
        self.combine(out, id, join, op == ReduceOp::Std, finish);
        let _ = writeln!(out, "{IN}}}\n            __syncthreads();\n        }}");
    }

    /// Joins the group's partial results (shuffles for an inner group of a warp or less, else
    /// through shared memory) and stores the output.
    fn combine(&self, out: &mut String, id: NodeId, join: u8, two: bool, finish: &str) {
        let _ = writeln!(out, "{IN}    if (inner && sp.g <= 32) {{");
        let _ = writeln!(out, "{IN2}    a0 = camc_warp_join<{join}>(a0, sp.g);");
        if two {
            let _ = writeln!(out, "{IN2}    a1 = camc_warp_join<0>(a1, sp.g);");
        }
        let _ = writeln!(
            out,
            "{IN2}    if (o < O && sp.lane == 0) s{}[o] = (float)({finish});",
            id.0
        );
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
        let _ = writeln!(out, "{IN2}        s{}[o] = (float)({finish});", id.0);
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
            let expr = self.expr(id);
            let _ = writeln!(out, "{indent}const float v{} = {expr};", id.0);
        }
        format!("v{}", root.0)
    }

    fn expr(&self, id: NodeId) -> String {
        let node = self.kernel.node(id);
        if self.scratch.contains(&id) {
            return format!("s{}[{}]", id.0, offset(node.ty));
        }
        match node.op {
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
                    let size = a.name().to_uppercase();
                    let _ = write!(out, " i_{a} = t % {size}; t /= {size};");
                }
            }
            out.push_str(" }\n");
        }
    }
}

/// The offset of the current index in a tensor typed `ty` (row-major, canonical order).
pub(super) fn offset(ty: AxisSet) -> String {
    let mut expr = String::new();
    for a in ty.iter() {
        expr = if expr.is_empty() {
            format!("i_{a}")
        } else {
            format!("({expr}) * {} + i_{a}", a.name().to_uppercase())
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

//! The IR's text form, as `camc emit --target ir` shows it and the snapshot tests record it.

use super::{InputKind, Kernel, Op};
use crate::axes::AxisSet;
use crate::ops::format_number;
use std::fmt::Write;

pub fn print(kernel: &Kernel) -> String {
    let mut out = String::new();
    let inputs: Vec<String> = kernel
        .inputs
        .iter()
        .map(|i| match i.kind {
            InputKind::PerImage => format!("{}: {}", i.name, i.ty),
            InputKind::Shared => format!("{}: shared {}", i.name, i.ty),
        })
        .collect();
    let _ = writeln!(
        out,
        "kernel {}({}) -> {} {{",
        kernel.name,
        inputs.join(", "),
        kernel.output_ty()
    );
    for (i, node) in kernel.nodes.iter().enumerate() {
        let _ = writeln!(out, "    %{i} = {} : {}", op_text(kernel, &node.op), node.ty);
    }
    let _ = writeln!(out, "    return %{}", kernel.output.0);
    out.push_str("}\n");
    out
}

fn over(axes: AxisSet) -> String {
    axes.to_string()
}

fn op_text(kernel: &Kernel, op: &Op) -> String {
    match *op {
        Op::Input(i) => format!("input {}", kernel.inputs[i as usize].name),
        Op::Const(v) => format!("const {}", format_number(v)),
        Op::Unary(f, x) => format!("{} %{}", f.name(), x.0),
        Op::Binary(f, a, b) => format!("{} %{}, %{}", f.name(), a.0, b.0),
        Op::Select(c, a, b) => format!("select %{}, %{}, %{}", c.0, a.0, b.0),
        Op::Reduce(f, axes, x) => format!("{}{} %{}", f.name(), over(axes), x.0),
        Op::Softmax(axes, x) => format!("softmax{} %{}", over(axes), x.0),
        Op::Normalize(axes, x) => format!("normalize{} %{}", over(axes), x.0),
        Op::Pc1(axis, x) => format!("pc1[{axis}] %{}", x.0),
        Op::Index(axis) => format!("index[{axis}]"),
        Op::Size(axes) => format!("size{}", over(axes)),
    }
}

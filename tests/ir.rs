//! The IR and the optimizer: every pass checked on programs whose result is known by hand,
//! the validator on broken kernels, and snapshots of the optimized IR of every good program
//! and stdlib method (tests/out/ir).

mod support;
use support::kernel;

use camc_compiler::ir::{self, Kernel, Op};
use camc_compiler::ops::{BinaryOp, ReduceOp, UnaryOp};
use camc_compiler::opt::Level;
use std::collections::HashMap;

fn count(kernel: &Kernel, pred: impl Fn(&Op) -> bool) -> usize {
    kernel.nodes.iter().filter(|n| pred(&n.op)).count()
}

#[test]
fn lowering_inlines_calls_and_binds_defaults_as_constants() {
    let k = kernel(
        "fn w(x: [k,h,w], s: [] = 3) = mean[h,w](x) * s\ncam c(A: [k,h,w], G: [k,h,w], e: [] = 0.5) = relu(sum[k](w(G) * A)) + e",
        Level::None,
    );
    assert_eq!(
        k.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["A", "G"]
    );
    let consts: Vec<f32> = k
        .nodes
        .iter()
        .filter_map(|n| if let Op::Const(v) = n.op { Some(v) } else { None })
        .collect();
    assert_eq!(consts, [0.5, 3.0]);
    assert_eq!(count(&k, |op| matches!(op, Op::Reduce(ReduceOp::Mean, ..))), 1);
    ir::validate(&k).expect("lowered IR is valid");
}

#[test]
fn knobs_override_defaults_and_unknown_knobs_are_errors() {
    let checked = camc_compiler::check_source("t.cam", "cam c(A: [k,h,w], eps: [] = 1e-6) = sum[k](A) + eps");
    let program = checked.program.as_ref().expect("checks");
    let root = program.cams().next().expect("a cam");
    let knobs = HashMap::from([("eps".to_string(), 0.25f32)]);
    let k = camc_compiler::compile_kernel(program, root, &knobs, Level::None).expect("compiles");
    assert!(k.nodes.iter().any(|n| n.op == Op::Const(0.25)));
    let bad = HashMap::from([("A".to_string(), 1.0f32)]);
    let err = camc_compiler::compile_kernel(program, root, &bad, Level::None).expect_err("A is a tensor");
    assert_eq!(err.to_string(), "`A` is not a scalar parameter of `c`");
}

#[test]
fn cse_computes_a_repeated_subexpression_once() {
    let source = "cam c(A: [k,h,w], G: [k,h,w]) = relu(sum[k](G^2 * A + G^2 + A*G + G*A))";
    let before = kernel(source, Level::None);
    let after = kernel(source, Level::Exact);
    assert_eq!(
        count(&before, |op| matches!(op, Op::Binary(BinaryOp::Pow, ..))),
        2
    );
    // G^2 → G*G once; A*G and G*A are one product.
    let muls = |k: &Kernel| count(k, |op| matches!(op, Op::Binary(BinaryOp::Mul, ..)));
    assert_eq!(count(&after, |op| matches!(op, Op::Binary(BinaryOp::Pow, ..))), 0);
    assert_eq!(muls(&after), 3, "{}", ir::print(&after));
}

#[test]
fn constants_fold_with_float32_semantics() {
    let k = kernel(
        "cam c(A: [k,h,w]) = sum[k](A) * (2 * 3 + exp(0) - (1 > 0)) + where(0, sum[k](A), 1)",
        Level::Exact,
    );
    let text = ir::print(&k);
    assert!(k.nodes.iter().any(|n| n.op == Op::Const(6.0)), "{text}");
    // `where(0, x, 1)` cannot fold to `1`: that would lose the [h,w] broadcast.
    assert_eq!(count(&k, |op| matches!(op, Op::Select(..))), 1, "{text}");
}

#[test]
fn simplification_removes_identities_but_keeps_broadcasts() {
    let k = kernel(
        "cam c(A: [k,h,w], t: []) = relu(relu(sum[k](A * 1 + 0) / 1)) + abs(abs(sum[k](A))) + t * 1",
        Level::Exact,
    );
    let text = ir::print(&k);
    assert_eq!(
        count(&k, |op| matches!(op, Op::Unary(UnaryOp::Relu, _))),
        1,
        "{text}"
    );
    assert_eq!(
        count(&k, |op| matches!(op, Op::Unary(UnaryOp::Abs, _))),
        1,
        "{text}"
    );
    assert_eq!(count(&k, |op| matches!(op, Op::Const(_))), 0, "{text}");
    // `0 * 1` would not be `0`'s type if the `1` were wider; here `t * 1` is exactly `t`.
    let k = kernel("cam c(A: [k,h,w]) = sum[k](A) * 0 + (2 * 1)", Level::Exact);
    ir::validate(&k).expect("valid after simplification");
}

#[test]
fn dead_code_and_unused_inputs_are_removed() {
    let k = kernel(
        "cam c(A: [k,h,w], G: [k,h,w]) { let unused = G * 2; relu(sum[k](A) + 0 * sum[k](unused)) }",
        Level::Exact,
    );
    assert_eq!(k.inputs.len(), 2, "0 * x is not simplified away: NaN * 0 is NaN");
    let k = kernel("cam c(A: [k,h,w], G: [k,h,w]) = relu(sum[k](A))", Level::Exact);
    assert_eq!(
        k.inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["A"]
    );
    assert_eq!(k.nodes.len(), 3, "{}", ir::print(&k));
}

#[test]
fn hoisting_moves_per_channel_factors_out_of_spatial_reductions() {
    // pytorch-grad-cam's XGrad-CAM divides every pixel by the channel's sum; hoisted, the
    // division happens once per channel.
    let source = "cam x(A: [k,h,w], G: [k,h,w]) = relu(sum[k](sum[h,w](G * A / (sum[h,w](A) + 1e-7)) * A))";
    let before = kernel(source, Level::None);
    let exact = kernel(source, Level::Exact);
    let after = kernel(source, Level::Fast);
    let divisions = |k: &Kernel| {
        k.nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Binary(BinaryOp::Div, ..)))
            .map(|n| n.ty.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(divisions(&before), ["[k,h,w]"]);
    // Not at the exact level: with a zero divisor the two forms differ (NaN against ±inf).
    assert_eq!(divisions(&exact), ["[k,h,w]"]);
    assert_eq!(divisions(&after), ["[k]"], "{}", ir::print(&after));
    // A factor that varies along the reduced axes stays inside.
    let k = kernel(
        "cam g(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](G * A) * A))",
        Level::Exact,
    );
    assert!(k
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::Binary(BinaryOp::Mul, ..)) && n.ty.to_string() == "[k,h,w]"));
}

#[test]
fn the_validator_returns_uses_and_liveness() {
    // %0 = A, %1 = 2, %2 = A * 2 (dead), %3 = A * A, %4 = sum[k](%3): built by hand.
    use camc_compiler::axes::{Axis, AxisSet};
    use camc_compiler::span::{SourceId, Span};
    let span = Span::new(SourceId(0), 0..0);
    let khw = AxisSet::of(&[Axis::K, Axis::H, Axis::W]);
    let hw = AxisSet::of(&[Axis::H, Axis::W]);
    let mut b = ir::Builder::default();
    let a = b.push(Op::Input(0), khw, span);
    let two = b.push(Op::Const(2.0), AxisSet::SCALAR, span);
    b.push(Op::Binary(BinaryOp::Mul, a, two), khw, span);
    let square = b.push(Op::Binary(BinaryOp::Mul, a, a), khw, span);
    let output = b.push(
        Op::Reduce(ReduceOp::Sum, AxisSet::of(&[Axis::K]), square),
        hw,
        span,
    );
    let kernel = Kernel {
        name: "by_hand".into(),
        inputs: vec![ir::Input {
            name: "A".into(),
            ty: khw,
            kind: ir::InputKind::PerImage,
            span,
        }],
        nodes: b.nodes,
        output,
        role: ir::Role::Map,
    };
    let info = ir::validate(&kernel).expect("valid");
    assert_eq!(
        info.uses,
        [3, 1, 0, 1, 1],
        "A is used by both products and twice by A * A"
    );
    assert_eq!(info.live, [true, false, false, true, true]);
}

#[test]
fn the_validator_rejects_broken_kernels() {
    let good = kernel(
        "cam g(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](G) * A))",
        Level::Exact,
    );
    ir::validate(&good).expect("valid");
    let mut forward = good.clone();
    forward.nodes[2].op = Op::Reduce(ReduceOp::Mean, forward.nodes[2].ty, ir::NodeId(4));
    assert!(ir::validate(&forward)
        .unwrap_err()
        .problem
        .contains("does not precede"));
    let mut mistyped = good.clone();
    let last = mistyped.nodes.len() - 2;
    mistyped.nodes[last].ty = mistyped.nodes[0].ty;
    assert!(ir::validate(&mistyped).is_err());
    let mut not_spatial = good;
    not_spatial.output = ir::NodeId(2);
    assert!(ir::validate(&not_spatial)
        .unwrap_err()
        .problem
        .contains("not spatial"));
}

#[test]
fn optimized_ir_snapshots() {
    let mut failures = Vec::new();
    for path in support::inputs("good") {
        let stem = support::stem(&path);
        let text = std::fs::read_to_string(&path).expect("readable");
        let checked = camc_compiler::check_source(&format!("good/{stem}.cam"), &text);
        let program = checked.program.as_ref().expect("good programs check");
        let mut out = String::new();
        for root in program.cams() {
            match camc_compiler::compile_kernel(program, root, &HashMap::new(), Level::Exact) {
                Ok(k) => out.push_str(&ir::print(&k)),
                Err(e) => failures.push(format!("{stem}: {e}")),
            }
        }
        if let Err(e) = support::snapshot(&format!("ir/{stem}.txt"), &out) {
            failures.push(e);
        }
    }
    for name in camc_compiler::stdlib::names() {
        let checked = camc_compiler::check_stdlib(name).expect("listed");
        let program = checked.program.as_ref().expect("stdlib checks");
        let root = program.exported(name).expect("file defines its method");
        let k =
            camc_compiler::compile_kernel(program, root, &HashMap::new(), Level::Exact).expect("compiles");
        if let Err(e) = support::snapshot(&format!("ir/stdlib/{name}.txt"), &ir::print(&k)) {
            failures.push(e);
        }
    }
    support::report(failures);
}

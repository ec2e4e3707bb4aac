//! Random well-typed programs, generated from the type rules: an expression of type `T` is a
//! leaf of exactly `T`, an elementwise operation whose operands' axes union to `T`, a reduction
//! of a wider expression, or a shape-keeping operation over axes of `T`. Used to check the
//! type checker and, later, to compare backends with the interpreter.
#![allow(dead_code)]

use proptest::prelude::*;

/// Axes by bit: k=1, h=2, w=4 (2-D programs).
pub type Ty = u8;
pub const K: Ty = 1;
pub const H: Ty = 2;
pub const W: Ty = 4;
pub const KHW: Ty = K | H | W;
pub const HW: Ty = H | W;

pub fn axes(ty: Ty) -> String {
    let names: Vec<&str> = [(K, "k"), (H, "h"), (W, "w")]
        .iter()
        .filter(|(bit, _)| ty & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    format!("[{}]", names.join(","))
}

/// The parameters every generated `cam` declares (`l` is a shared head `[c,k]`).
pub const PARAMS: &str = "A: [k,h,w], G: [k,h,w], s: [k], t: [], l: shared [c,k]";

fn leaf(ty: Ty) -> Option<BoxedStrategy<String>> {
    match ty {
        KHW => Some(prop_oneof![Just("A".to_string()), Just("G".to_string())].boxed()),
        K => Some(prop_oneof![Just("s".to_string()), Just("pick[c](l, 0)".to_string())].boxed()),
        H => Some(Just("index[h]()".to_string()).boxed()),
        W => Some(Just("index[w]()".to_string()).boxed()),
        0 => Some(
            prop_oneof![
                Just("t".to_string()),
                Just("2".to_string()),
                Just("0.5".to_string()),
                Just("1e-3".to_string()),
                Just("size[h,w]()".to_string()),
            ]
            .boxed(),
        ),
        _ => None,
    }
}

/// The smallest expression of type `ty`: a leaf, or a sum of `A` over the missing axes.
fn minimal(ty: Ty) -> BoxedStrategy<String> {
    leaf(ty).unwrap_or_else(|| {
        let reduced = KHW & !ty;
        let base = if reduced == 0 {
            "A".to_string()
        } else {
            format!("sum{}(A)", axes(reduced))
        };
        Just(base).boxed()
    })
}

/// Non-empty subsets of `set`.
fn subsets(set: Ty) -> Vec<Ty> {
    (1..=KHW).filter(|s| s & !set == 0).collect()
}

const UNARY: [&str; 8] = ["relu", "abs", "sign", "exp", "log", "sqrt", "sigmoid", "tanh"];
const BINARY: [&str; 12] = ["+", "-", "*", "/", "==", "!=", "<", "<=", ">", ">=", "&&", "||"];
const REDUCE: [&str; 6] = ["sum", "mean", "max", "min", "norm", "std"];

/// An expression of exactly type `ty`, at most `depth` operations deep.
pub fn expr(ty: Ty, depth: u32) -> BoxedStrategy<String> {
    if depth == 0 {
        return minimal(ty);
    }
    let d = depth - 1;
    let mut choices: Vec<BoxedStrategy<String>> = vec![minimal(ty)];
    choices.push(
        (proptest::sample::select(UNARY.to_vec()), expr(ty, d))
            .prop_map(|(f, x)| format!("{f}({x})"))
            .boxed(),
    );
    choices.push(expr(ty, d).prop_map(|x| format!("-({x})")).boxed());
    let narrower: Vec<Ty> = (0..=KHW).filter(|s| s & !ty == 0).collect();
    choices.push(
        (
            proptest::sample::select(narrower.clone()),
            any::<bool>(),
            proptest::sample::select(BINARY.to_vec()),
        )
            .prop_flat_map(move |(other, swap, op)| {
                (expr(ty, d), expr(other, d)).prop_map(move |(a, b)| {
                    let (l, r) = if swap { (b, a) } else { (a, b) };
                    format!("({l} {op} {r})")
                })
            })
            .boxed(),
    );
    choices.push(
        (
            proptest::sample::select(narrower),
            proptest::sample::select(vec!["min", "max"]),
        )
            .prop_flat_map(move |(other, f)| {
                (expr(ty, d), expr(other, d)).prop_map(move |(a, b)| format!("{f}({a}, {b})"))
            })
            .boxed(),
    );
    choices.push(
        (expr(0, d), expr(ty, d), expr(0, d))
            .prop_map(|(c, a, b)| format!("where({c} > 0, {a}, {b})"))
            .boxed(),
    );
    let outside = KHW & !ty;
    if outside != 0 {
        choices.push(
            (
                proptest::sample::select(subsets(outside)),
                proptest::sample::select(REDUCE.to_vec()),
            )
                .prop_flat_map(move |(over, op)| {
                    expr(ty | over, d).prop_map(move |x| format!("{op}{}({x})", axes(over)))
                })
                .boxed(),
        );
    }
    if ty != 0 {
        choices.push(
            (
                proptest::sample::select(subsets(ty)),
                proptest::sample::select(vec!["softmax", "normalize"]),
            )
                .prop_flat_map(move |(over, op)| {
                    expr(ty, d).prop_map(move |x| format!("{op}{}({x})", axes(over)))
                })
                .boxed(),
        );
    }
    if ty == HW {
        choices.push(expr(KHW, d).prop_map(|x| format!("pc1[k]({x})")).boxed());
    }
    proptest::strategy::Union::new(choices).boxed()
}

/// A whole `cam` whose body is a random `[h,w]` expression, sometimes through `let`s.
pub fn program(depth: u32) -> BoxedStrategy<String> {
    (expr(HW, depth), expr(KHW, depth.saturating_sub(1)), any::<bool>())
        .prop_map(|(body, bound, with_let)| {
            if with_let {
                format!("cam r({PARAMS}) {{\n    let x = {bound}\n    relu(sum[k](x)) + {body}\n}}\n")
            } else {
                format!("cam r({PARAMS}) = {body}\n")
            }
        })
        .boxed()
}

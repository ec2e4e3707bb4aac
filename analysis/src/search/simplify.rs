//! Readable `.cam` source for search terms: [`simplified`] prints what [`super::term::source`]
//! prints with as few parentheses as the grammar allows, repeated factors as integer powers,
//! like terms of a sum collected and double negations removed. Every rewrite is exact or a
//! reassociation of `+` or `*` (a change by rounding only); nothing cancels (`x - x`) or
//! divides out, since a zero or the `/+` guard would make that change values.

use super::term::{Term, TermId, TermOp, SAFE_DIV_EPS};
use camc_compiler::ops::{format_number, BinaryOp, UnaryOp};

/// An expression as printed. `Num` is never negative: `-1` is `Neg(Num(1))`, as the grammar
/// reads it. `Mul` and `Sum` have two or more operands and evaluate left to right, as the
/// parser groups `a * b * c`; a `Sum` term marked `true` is subtracted (never the first).
#[derive(Clone, Debug, PartialEq)]
enum Expr {
    Name(String),
    Num(f32),
    Call(String, Vec<Expr>),
    Neg(Box<Expr>),
    Pow(Box<Expr>, Box<Expr>),
    Div(Box<Expr>, Box<Expr>),
    Mul(Vec<Expr>),
    Sum(Vec<(bool, Expr)>),
}

// Binding powers of compiler/src/syntax/precedence.rs: unary minus binds looser than `^`
// (`-x^2` is `-(x^2)`) and tighter than `*`; `^` is right-associative, the others left.
const SUM: u8 = 4;
const PRODUCT: u8 = 5;
const NEG: u8 = 6;
const POWER: u8 = 7;
const ATOM: u8 = 8;

/// Larger integer exponents are left as written rather than merged into a power.
const MAX_EXPONENT: f32 = 1024.0;

/// The term as readable `.cam` source, equal to [`super::term::source`]'s up to rounding.
pub fn simplified(terms: &[Term], id: TermId, terminals: &[String]) -> String {
    render(&lower(terms, id, terminals))
}

fn lower(terms: &[Term], id: TermId, names: &[String]) -> Expr {
    let operand = |x: TermId| lower(terms, x, names);
    match terms[id as usize].op {
        TermOp::Tensor(i) => Expr::Name(names[i as usize].clone()),
        TermOp::Const(c) if c.is_sign_negative() => Expr::Neg(Box::new(Expr::Num(-c))),
        TermOp::Const(c) => Expr::Num(c),
        TermOp::Unary(UnaryOp::Neg, x) => negate(operand(x)),
        TermOp::Unary(op, x) => Expr::Call(op.name().into(), vec![operand(x)]),
        TermOp::Reduce(op, x) => Expr::Call(format!("{}[h,w]", op.name()), vec![operand(x)]),
        TermOp::Binary(op, a, b) => binary(op, operand(a), operand(b)),
        TermOp::SafeDiv(a, b) => {
            // The guard is added last to the denominator as computed, so it is never merged
            // or reordered: `a / (b + c + 1e-7)` is `a / ((b + c) + 1e-7)`.
            let mut guard = match operand(b) {
                Expr::Sum(terms) => terms,
                b => vec![(false, b)],
            };
            guard.push((false, Expr::Num(SAFE_DIV_EPS)));
            Expr::Div(Box::new(operand(a)), Box::new(Expr::Sum(guard)))
        }
    }
}

fn binary(op: BinaryOp, a: Expr, b: Expr) -> Expr {
    match op {
        BinaryOp::Add => sum([summands(a, false, true), summands(b, false, false)].concat()),
        BinaryOp::Sub => sum([summands(a, false, true), summands(b, true, false)].concat()),
        BinaryOp::Mul => product(vec![a, b]),
        BinaryOp::Div => Expr::Div(Box::new(a), Box::new(b)),
        BinaryOp::Pow => Expr::Pow(Box::new(a), Box::new(b)),
        other => Expr::Call(other.name().into(), vec![a, b]),
    }
}

/// `e` as terms of a sum, signs taken out (`a - (-b)` is exactly `a + b`). A sum on the
/// `left` of `+` or `-` is read as it is evaluated (`a - b + c`); on the right only a chain of
/// `+` regroups: `a + (b + c)` → `a + b + c`, but `a + (b - c)` and `a - (b + c)` stay, since
/// reassociating a subtraction is where cancellation would lose most.
fn summands(e: Expr, minus: bool, left: bool) -> Vec<(bool, Expr)> {
    let (negative, e) = split_sign(e);
    match e {
        Expr::Sum(terms) if negative == minus && (left || terms[1..].iter().all(|t| !t.0)) => terms
            .into_iter()
            .map(|(subtracted, x)| {
                let (negative, x) = split_sign(x);
                (subtracted != negative, x)
            })
            .collect(),
        e => vec![(negative != minus, e)],
    }
}

/// `(negative, x)` with `e = -x` or `e = x`, exactly: the sign of a product or a quotient is
/// its first factor's.
fn split_sign(e: Expr) -> (bool, Expr) {
    match e {
        Expr::Neg(x) => (true, *x),
        Expr::Mul(mut factors) => {
            let (negative, first) = split_sign(factors.remove(0));
            factors.insert(0, first);
            (negative, Expr::Mul(factors))
        }
        Expr::Div(a, b) => {
            let (negative, a) = split_sign(*a);
            (negative, Expr::Div(Box::new(a), b))
        }
        e => (false, e),
    }
}

/// `-e`, with the minus on a product's first factor (`-A * G`), which parses back as written.
fn negate(e: Expr) -> Expr {
    match e {
        Expr::Neg(x) => *x,
        Expr::Mul(mut factors) => {
            factors[0] = negate(std::mem::replace(&mut factors[0], Expr::Num(0.0)));
            Expr::Mul(factors)
        }
        Expr::Div(a, b) => Expr::Div(Box::new(negate(*a)), b),
        e => Expr::Neg(Box::new(e)),
    }
}

/// A sum with like terms of the same sign collected (`x + 2 * x` → `3 * x` when the
/// coefficients add exactly; numbers are not added up), in order of first appearance, but for
/// `-a + b ...` → `b - a ...` (exact, as the first two terms are added first).
fn sum(terms: Vec<(bool, Expr)>) -> Expr {
    // Per group: sign, text of the term without its coefficient, members.
    let mut groups: Vec<(bool, String, Vec<Expr>)> = Vec::new();
    for (minus, e) in terms {
        let rest = split_coefficient(&e).1;
        let key = match rest {
            Expr::Num(_) => String::new(),
            _ => render(&rest),
        };
        match groups.iter_mut().find(|g| g.0 == minus && g.1 == key) {
            Some(group) if !key.is_empty() => group.2.push(e),
            _ => groups.push((minus, key, vec![e])),
        }
    }
    let mut out = Vec::new();
    for (minus, _, members) in groups {
        let total: f64 = members.iter().map(|e| split_coefficient(e).0 as f64).sum();
        if members.len() > 1 && total.is_finite() && (total as f32) as f64 == total {
            let rest = split_coefficient(&members[0]).1;
            out.push((minus, product(vec![Expr::Num(total as f32), rest])));
        } else {
            out.extend(members.into_iter().map(|e| (minus, e)));
        }
    }
    // Not a parenthesized sum: first, it would regroup with the other term when read back.
    if out.len() >= 2 && out[0].0 && !out[1].0 && !matches!(out[1].1, Expr::Sum(_)) {
        out.swap(0, 1);
    }
    let (minus, first) = out.remove(0);
    let first = if minus { negate(first) } else { first };
    if out.is_empty() {
        return first;
    }
    out.insert(0, (false, first));
    Expr::Sum(out)
}

/// `2 * A * G` → `(2, A * G)`; a term without a leading number has coefficient 1.
fn split_coefficient(e: &Expr) -> (f32, Expr) {
    match e {
        Expr::Mul(factors) => match factors[0] {
            Expr::Num(c) if factors.len() == 2 => (c, factors[1].clone()),
            Expr::Num(c) => (c, Expr::Mul(factors[1..].to_vec())),
            _ => (1.0, e.clone()),
        },
        e => (1.0, e.clone()),
    }
}

/// A product flattened, its signs taken out onto the first factor, its numbers multiplied
/// when that is exact, and repeated factors (by text) made integer powers: `G * A * G` →
/// `A * G^2`. Numbers come first, then the other factors in the order of their text.
fn product(factors: Vec<Expr>) -> Expr {
    let (mut negative, mut flat) = (false, Vec::new());
    for f in factors {
        collect_factors(f, &mut negative, &mut flat);
    }
    let (mut numbers, mut powers) = (Vec::new(), Vec::<(String, Expr, u32)>::new());
    for f in flat {
        let (base, exponent) = match f {
            Expr::Num(c) => {
                numbers.push(c);
                continue;
            }
            f => as_power(f),
        };
        let key = render(&base);
        match powers.iter_mut().find(|p| p.0 == key) {
            Some(power) => power.2 += exponent,
            None => powers.push((key, base, exponent)),
        }
    }
    powers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = fold_numbers(numbers, powers.is_empty());
    out.extend(powers.into_iter().map(|(_, base, exponent)| match exponent {
        1 => base,
        n => Expr::Pow(Box::new(base), Box::new(Expr::Num(n as f32))),
    }));
    let e = if out.len() == 1 {
        out.remove(0)
    } else {
        Expr::Mul(out)
    };
    if negative {
        negate(e)
    } else {
        e
    }
}

fn collect_factors(f: Expr, negative: &mut bool, out: &mut Vec<Expr>) {
    let (minus, f) = split_sign(f);
    *negative ^= minus;
    match f {
        Expr::Mul(factors) => factors
            .into_iter()
            .for_each(|g| collect_factors(g, negative, out)),
        f => out.push(f),
    }
}

/// `x^n` with `n` a positive integer as `(x, n)`, anything else as `(x, 1)`: only such powers
/// merge exactly (`x^0.5 * x^0.5` is not `x` for negative `x`, nor `x^-1 * x` 1 for `x = 0`).
fn as_power(f: Expr) -> (Expr, u32) {
    match f {
        Expr::Pow(base, exponent) => match *exponent {
            Expr::Num(n) if (1.0..=MAX_EXPONENT).contains(&n) && n.fract() == 0.0 => (*base, n as u32),
            exponent => (Expr::Pow(base, Box::new(exponent)), 1),
        },
        f => (f, 1),
    }
}

/// The numbers of a product: one when their product is exact (none when that is 1 and other
/// factors remain, as `1 * x` is `x`), else all of them as written.
fn fold_numbers(numbers: Vec<f32>, alone: bool) -> Vec<Expr> {
    let exact = numbers.iter().try_fold(1.0f32, |acc, &c| {
        let p = acc * c;
        (p.is_finite() && p as f64 == acc as f64 * c as f64).then_some(p)
    });
    match exact {
        Some(p) if p == 1.0 && !alone => Vec::new(),
        Some(p) => vec![Expr::Num(p)],
        None => numbers.into_iter().map(Expr::Num).collect(),
    }
}

fn precedence(e: &Expr) -> u8 {
    match e {
        Expr::Name(_) | Expr::Num(_) | Expr::Call(..) => ATOM,
        Expr::Pow(..) => POWER,
        Expr::Neg(_) => NEG,
        Expr::Mul(_) | Expr::Div(..) => PRODUCT,
        Expr::Sum(_) => SUM,
    }
}

/// `e` as an operand that must bind at least as tightly as `min`.
fn operand(e: &Expr, min: u8) -> String {
    if precedence(e) < min {
        format!("({})", render(e))
    } else {
        render(e)
    }
}

fn render(e: &Expr) -> String {
    match e {
        Expr::Name(name) => name.clone(),
        Expr::Num(c) => format_number(*c),
        Expr::Call(name, args) => {
            let args: Vec<String> = args.iter().map(render).collect();
            format!("{name}({})", args.join(", "))
        }
        // A minus before a power or another minus needs no parentheses: `-x^2`, `a^-b^c`.
        Expr::Neg(x) => format!("-{}", operand(x, NEG)),
        Expr::Pow(a, b) => format!("{}^{}", operand(a, ATOM), operand(b, NEG)),
        Expr::Div(a, b) => format!("{} / {}", operand(a, PRODUCT), operand(b, NEG)),
        Expr::Mul(factors) => {
            let rest = factors[1..].iter().map(|f| format!(" * {}", operand(f, NEG)));
            std::iter::once(operand(&factors[0], PRODUCT))
                .chain(rest)
                .collect()
        }
        Expr::Sum(terms) => {
            let rest = terms[1..].iter().map(|(minus, t)| {
                let op = if *minus { " - " } else { " + " };
                format!("{op}{}", operand(t, PRODUCT))
            });
            std::iter::once(operand(&terms[0].1, SUM)).chain(rest).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::term::{k, khw, source};
    use camc_compiler::syntax::ast::{BinaryOp as AstOp, ExprId, ExprKind, Item};
    use camc_compiler::{axes::AxisSet, dims::Dims, ops::ReduceOp, span::SourceMap};
    use std::collections::HashMap;

    const NAMES: [&str; 3] = ["A", "G", "B"];
    const REDUCTIONS: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max];
    const BINARY: [BinaryOp; 7] = {
        use BinaryOp::*;
        [Add, Sub, Mul, Div, Pow, Min, Max]
    };

    fn named<T: Copy>(ops: &[T], name: &str, of: fn(T) -> &'static str) -> T {
        let found = ops.iter().find(|&&o| of(o) == name);
        *found.unwrap_or_else(|| panic!("no operation `{name}`"))
    }

    /// Terms typed as the enumerator types them.
    #[derive(Default)]
    struct Terms(Vec<Term>);

    impl Terms {
        fn push(&mut self, op: TermOp) -> TermId {
            let ty = |x: TermId| self.0[x as usize].ty;
            let ty = match op {
                TermOp::Tensor(_) => khw(),
                TermOp::Const(_) => AxisSet::SCALAR,
                TermOp::Unary(_, x) => ty(x),
                TermOp::Reduce(..) => k(),
                TermOp::Binary(_, a, b) | TermOp::SafeDiv(a, b) => ty(a).union(ty(b)),
            };
            self.0.push(Term { op, ty, size: 1 });
            self.0.len() as TermId - 1
        }

        /// `source` and `simplified`.
        fn print(&self, id: TermId) -> (String, String) {
            let names = NAMES.map(String::from);
            (source(&self.0, id, &names), simplified(&self.0, id, &names))
        }
    }

    /// The terms of an expression as the parser reads it, `a / (b + 1e-7)` as `/+`.
    fn parse(text: &str, t: &mut Terms) -> TermId {
        let program = format!("cam p(A: [k,h,w], G: [k,h,w], B: [k,h,w]) = {text}");
        let id = SourceMap::new().add("p", program.as_str());
        let (file, errors) = camc_compiler::syntax::parse(id, &program);
        assert!(errors.is_empty(), "{text} does not parse");
        to_terms(&file.items[0], file.items[0].result, t)
    }

    fn to_terms(item: &Item, id: ExprId, t: &mut Terms) -> TermId {
        let guard = |e: ExprId| matches!(item.expr(e).kind, ExprKind::Number(v) if v as f32 == SAFE_DIV_EPS);
        let op = match &item.expr(id).kind {
            ExprKind::Number(v) => TermOp::Const(*v as f32),
            ExprKind::Name(n) => TermOp::Tensor(NAMES.iter().position(|m| m == n).unwrap() as u32),
            ExprKind::Neg(x) => TermOp::Unary(UnaryOp::Neg, to_terms(item, *x, t)),
            ExprKind::Binary(op, a, b) => {
                let a = to_terms(item, *a, t);
                match (op, &item.expr(*b).kind) {
                    (AstOp::Div, ExprKind::Binary(AstOp::Add, d, e)) if guard(*e) => {
                        TermOp::SafeDiv(a, to_terms(item, *d, t))
                    }
                    _ => {
                        let op = named(&BINARY, &format!("{op:?}").to_lowercase(), BinaryOp::name);
                        TermOp::Binary(op, a, to_terms(item, *b, t))
                    }
                }
            }
            ExprKind::Call { callee, axes, args } => {
                let args: Vec<TermId> = args.iter().map(|&a| to_terms(item, a, t)).collect();
                let name = callee.name.as_str();
                match args[..] {
                    [x] if axes.is_some() => TermOp::Reduce(named(&REDUCTIONS, name, ReduceOp::name), x),
                    [x] => TermOp::Unary(named(&UnaryOp::ALL, name, UnaryOp::name), x),
                    [a, b] => TermOp::Binary(named(&BINARY, name, BinaryOp::name), a, b),
                    _ => unreachable!("no such call is printed"),
                }
            }
        };
        t.push(op)
    }

    #[test]
    fn hand_written_cases() {
        for (input, want) in [
            ("((A * (A * A)) * A)", "A^4"),
            ("((G * A) * G)", "A * G^2"),
            ("(A + A)", "2 * A"),
            ("((A * A) + (A * A))", "2 * A^2"),
            ("((A * 2) + A)", "3 * A"),
            ("((A * 2) * 2)", "4 * A"),
            ("((A * 0.5) * 2)", "A"),
            ("(-(-A))", "A"),
            ("(A - (-G))", "A + G"),
            ("(A + (-G))", "A - G"),
            ("((-A) + G)", "G - A"),
            ("(G * (-A))", "-A * G"),
            ("(B - (G * (-A)))", "B + A * G"),
            ("((-1) * A)", "-A"),
            ("(A - (-1))", "A + 1"),
            ("((A - G) - B)", "A - G - B"),
            ("(A - (G - B))", "A - (G - B)"),
            ("(A + (G - B))", "A + (G - B)"),
            ("(A + (G + B))", "A + G + B"),
            ("(B - (A + G))", "B - (A + G)"),
            ("((A + G) * (A - G))", "(A + G) * (A - G)"),
            ("((A + G) * (A + G))", "(A + G)^2"),
            ("((-A) ^ 2)", "(-A)^2"),
            ("(-(A ^ 2))", "-A^2"),
            ("((A ^ 2) * A)", "A^3"),
            ("(A ^ (G ^ B))", "A^G^B"),
            ("((A ^ G) ^ B)", "(A^G)^B"),
            ("(A ^ (-1))", "A^-1"),
            ("((A + G) ^ (-A))", "(A + G)^-A"),
            ("((A ^ 0.5) * (A ^ 0.5))", "(A^0.5)^2"),
            ("((A / G) / A)", "A / G / A"),
            ("(A / (G * A))", "A / (A * G)"),
            // Nothing cancels or divides out.
            ("(A - A)", "A - A"),
            ("((A * A) / A)", "A^2 / A"),
            ("max(A, (-(-G)))", "max(A, G)"),
            ("relu(max[h,w]((A * A)))", "relu(max[h,w](A^2))"),
            (
                "(sum[h,w](G) / (sum[h,w](A) + 1e-7))",
                "sum[h,w](G) / (sum[h,w](A) + 1e-7)",
            ),
            ("((-A) / ((A - G) + 1e-7))", "-A / (A - G + 1e-7)"),
            ("(A / ((-G) + 1e-7))", "A / (-G + 1e-7)"),
        ] {
            let mut t = Terms::default();
            let id = parse(input, &mut t);
            assert_eq!(t.print(id), (input.to_string(), want.to_string()));
        }
    }

    /// xorshift64*: deterministic, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[(self.next() >> 33) as usize % items.len()]
        }
    }

    /// A random well-typed term over `A`, `G` (both `[k,h,w]`) and a few constants.
    fn random_term(rng: &mut Rng, t: &mut Terms, depth: u32) -> TermId {
        use BinaryOp::*;
        if depth == 0 || rng.pick(&[true, false, false, false, false]) {
            let leaf = match rng.pick(&[0, 0, 1, 1, 2]) {
                2 => TermOp::Const(rng.pick(&[1.0, 2.0, 0.5, -1.0])),
                i => TermOp::Tensor(i),
            };
            return t.push(leaf);
        }
        let x = random_term(rng, t, depth - 1);
        let op = match rng.pick(&[0, 1, 2, 3, 4, 4, 4, 4, 4]) {
            0 => TermOp::Unary(
                rng.pick(&[UnaryOp::Neg, UnaryOp::Relu, UnaryOp::Abs, UnaryOp::Tanh]),
                x,
            ),
            1 if t.0[x as usize].ty == khw() => TermOp::Reduce(rng.pick(&REDUCTIONS), x),
            // Not a constant base: `source` prints `(-1)^e` as `-1 ^ e`, which is `-(1^e)`.
            2 if !matches!(t.0[x as usize].op, TermOp::Const(_)) => {
                TermOp::Binary(Pow, x, t.push(TermOp::Const(rng.pick(&[2.0, 3.0, 0.5]))))
            }
            3 => TermOp::SafeDiv(x, random_term(rng, t, depth - 1)),
            _ => {
                let op = rng.pick(&[Add, Add, Sub, Sub, Mul, Mul, Mul, Div, Min, Max]);
                TermOp::Binary(op, x, random_term(rng, t, depth - 1))
            }
        };
        t.push(op)
    }

    /// `relu(sum[k](weights * A))` on the given inputs, in f64 so that the rounding a
    /// reassociation changes is not amplified (by cancellation) past the tolerance.
    fn map(weights: &str, inputs: &[Vec<f64>; 2], dims: Dims) -> Vec<f64> {
        let text = format!("cam p(A: [k,h,w], G: [k,h,w]) = relu(sum[k](({weights}) * A))");
        let checked = camc_compiler::check_source("p", &text);
        let Some(program) = checked.program.as_ref() else {
            panic!("{text} does not check:\n{}", checked.render(false))
        };
        let root = program.exported("p").expect("cam p");
        let level = camc_compiler::opt::Level::Exact;
        let kernel = camc_compiler::compile_kernel(program, root, &HashMap::new(), level)
            .unwrap_or_else(|e| panic!("{text} does not compile: {e}"));
        let data: Vec<&[f64]> = kernel
            .inputs
            .iter()
            .map(|i| &inputs[(i.name == "G") as usize][..])
            .collect();
        camc_runtime::interp::eval_f64(&kernel, dims, &data).expect("evaluates")
    }

    /// `e` fully parenthesized as [`source`] prints: the tree the simplified text stands for.
    fn full(e: &Expr) -> String {
        let fold = |first: &Expr, rest: Vec<(&str, &Expr)>| {
            let first = full(first);
            rest.into_iter()
                .fold(first, |acc, (op, x)| format!("({acc} {op} {})", full(x)))
        };
        match e {
            Expr::Name(_) | Expr::Num(_) => render(e),
            Expr::Call(name, args) => {
                format!("{name}({})", args.iter().map(full).collect::<Vec<_>>().join(", "))
            }
            Expr::Neg(x) => format!("(-{})", full(x)),
            Expr::Pow(a, b) => fold(a, vec![("^", b)]),
            Expr::Div(a, b) => fold(a, vec![("/", b)]),
            Expr::Mul(fs) => fold(&fs[0], fs[1..].iter().map(|f| ("*", f)).collect()),
            Expr::Sum(ts) => fold(
                &ts[0].1,
                ts[1..]
                    .iter()
                    .map(|(m, x)| (["+", "-"][*m as usize], x))
                    .collect(),
            ),
        }
    }

    #[test]
    fn random_terms_keep_their_values() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let dims = Dims::new(3, 1, 2, 2);
        let mut shorter = 0;
        for case in 0..300 {
            let mut t = Terms::default();
            let id = random_term(&mut rng, &mut t, 1 + case % 5);
            let (original, simple) = t.print(id);
            assert_eq!(simple, t.print(id).1, "printing is deterministic");
            assert!(
                simple.len() <= original.len(),
                "{simple} is longer than {original}"
            );
            shorter += (simple.len() < original.len()) as usize;
            // The text parses back to the tree it was printed from, which prints the same.
            let mut parsed = Terms::default();
            let root = parse(&simple, &mut parsed);
            let names = NAMES.map(String::from);
            assert_eq!(parsed.print(root).0, full(&lower(&t.0, id, &names)), "{simple}");
            assert_eq!(parsed.print(root).1, simple, "from {original}");
            let inputs = [0, 1].map(|_| {
                let uniform = |r: u64| (r >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0;
                (0..dims.k * dims.h * dims.w)
                    .map(|_| uniform(rng.next()))
                    .collect()
            });
            let (want, got) = (map(&original, &inputs, dims), map(&simple, &inputs, dims));
            for (x, y) in want.iter().zip(&got) {
                let close = x == y
                    || (x.is_nan() && y.is_nan())
                    || (x - y).abs() <= 1e-6 + 1e-4 * x.abs().max(y.abs());
                assert!(close, "{original} → {simple}: {want:?} vs {got:?}");
            }
        }
        assert!(shorter > 100, "only {shorter} of 300 terms got shorter");
    }
}

//! `camc check` never panics, hangs or overflows its stack, whatever the input: explicit
//! regressions for hostile inputs, and property tests over random and mutated sources.

mod support;

use camc_compiler::check_source;
use proptest::prelude::*;
use support::gen;

/// Checks and renders `text`; returns the rendered diagnostics.
fn check(text: &str) -> (bool, String) {
    let checked = check_source("input.cam", text);
    let rendered = checked.render(false);
    (checked.program.is_some(), rendered)
}

fn assert_rejected_with(text: &str, expected: &str) {
    let (ok, rendered) = check(text);
    assert!(!ok, "accepted");
    assert!(
        rendered.contains(expected),
        "diagnostics lack `{expected}`:\n{rendered}"
    );
}

#[test]
fn empty_and_comment_only_files_are_accepted() {
    for text in [
        "",
        "   \n\t\n",
        "# only a comment",
        "# unterminated comment at end of file",
        "#",
    ] {
        let (ok, rendered) = check(text);
        assert!(ok && rendered.is_empty(), "{text:?}: {rendered}");
    }
}

#[test]
fn binary_junk_is_a_syntax_error() {
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let text = String::from_utf8_lossy(&junk);
    assert_rejected_with(&text, "Error: ");
    assert_rejected_with("\0\0\0", "unexpected here");
}

#[test]
fn a_ten_megabyte_file_is_refused_quickly() {
    let line = "cam g(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](G) * A))\n";
    let text = line.repeat(10_000_000 / line.len() + 1);
    let started = std::time::Instant::now();
    assert_rejected_with(&text, "file is too large to be a program");
    assert!(started.elapsed().as_secs() < 5);
}

#[test]
fn ten_thousand_nested_parentheses_are_refused() {
    let text = format!(
        "cam f(A: [k,h,w]) = sum[k]({}A{})",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert_rejected_with(&text, "parentheses are nested too deeply");
    let calls = format!(
        "cam f(A: [k,h,w]) = sum[k]({}A{})",
        "relu(".repeat(10_000),
        ")".repeat(10_000)
    );
    assert_rejected_with(&calls, "parentheses are nested too deeply");
}

#[test]
fn long_operator_chains_are_refused_without_recursion() {
    // Each would nest the tree 100 000 deep: left chains, right-associative powers, unary minus.
    let sum = format!("cam f(A: [k,h,w]) = sum[k](A{})", " + A".repeat(100_000));
    assert_rejected_with(&sum, "expression is nested too deeply");
    let power = format!("cam f(A: [k,h,w]) = sum[k](A{})", "^2".repeat(100_000));
    assert_rejected_with(&power, "expression is nested too deeply");
    let minus = format!("cam f(A: [k,h,w]) = sum[k]({}A)", "-".repeat(100_000));
    assert_rejected_with(&minus, "expression is nested too deeply");
}

#[test]
fn nesting_just_under_the_limits_is_accepted() {
    let parens = format!(
        "cam f(A: [k,h,w]) = sum[k]({}A{})",
        "(".repeat(100),
        ")".repeat(100)
    );
    assert!(check(&parens).0);
    let chain = format!("cam f(A: [k,h,w]) = sum[k](A{})", " + A".repeat(200));
    assert!(check(&chain).0, "{}", check(&chain).1);
}

#[test]
fn huge_numbers_are_errors_and_big_finite_ones_are_not() {
    assert_rejected_with(
        "cam f(A: [k,h,w]) = sum[k](A) * 1e999",
        "number `1e999` is too large",
    );
    assert_rejected_with(
        &format!("cam f(A: [k,h,w]) = sum[k](A) * 9{}", "9".repeat(400)),
        "is too large",
    );
    assert!(check("cam f(A: [k,h,w]) = sum[k](A) * 3e38").0);
    assert!(check("cam f(A: [k,h,w]) = sum[k](A) * 0.000000000000000000000000000000000000000000001").0);
}

#[test]
fn unicode_identifiers_work_and_errors_underline_the_right_characters() {
    assert!(check("cam é(α: [k,h,w], β: [k,h,w]) = relu(sum[k](mean[h,w](β) * α))").0);
    let (ok, rendered) = check("cam f(α: [k,h,w]) = relu(sum[k](α)) + βγ");
    assert!(!ok);
    assert!(rendered.contains("unknown name `βγ`"), "{rendered}");
    // The underline starts under `βγ`, which is preceded by characters of two bytes.
    let line = rendered
        .lines()
        .find(|l| l.contains("+ βγ"))
        .expect("source line shown");
    let mark = rendered
        .lines()
        .skip_while(|l| !l.contains("+ βγ"))
        .nth(1)
        .expect("underline");
    let column = |s: &str, pat: char| s.chars().position(|c| c == pat).expect("present");
    assert_eq!(
        column(line, 'β'),
        column(mark, '┬').min(column(mark, '─')),
        "{rendered}"
    );
}

#[test]
fn every_stdlib_method_checks_cleanly() {
    for name in camc_compiler::stdlib::names() {
        let checked = camc_compiler::check_stdlib(name).expect("listed method has a source");
        assert!(
            checked.program.is_some() && checked.diagnostics.is_empty(),
            "{name}:\n{}",
            checked.render(false)
        );
    }
}

/// Tokens of the language, to build random inputs that get past the lexer.
fn token() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "cam", "fn", "let", "A", "G", "x", "relu", "sum", "max", "pc1", "where", "(", ")", "[", "]", "{",
        "}", ",", ":", ";", "=", "==", "+", "-", "*", "/", "^", "<", "&&", "||", "k", "h", "w", "d", "1",
        "2.5", "1e-7", "#c\n", "\n", " ", "é", "\u{0}",
    ])
}

fn mutate(base: &str, edits: &[(usize, u8, char)]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for &(at, kind, c) in edits {
        if chars.is_empty() {
            chars.push(c);
            continue;
        }
        let at = at % chars.len();
        match kind % 3 {
            0 => chars.insert(at, c),
            1 => {
                chars.remove(at);
            }
            _ => chars[at] = c,
        }
    }
    chars.into_iter().collect()
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_token_soup_never_panics(tokens in proptest::collection::vec(token(), 0..80)) {
        check(&tokens.join(" "));
        check(&tokens.concat());
    }

    #[test]
    fn mutated_stdlib_sources_never_panic(
        method in proptest::sample::select(camc_compiler::stdlib::names().collect::<Vec<_>>()),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), proptest::char::any()), 1..8),
    ) {
        let source = camc_compiler::stdlib::source(method).expect("listed");
        check(&mutate(source, &edits));
    }

    #[test]
    fn generated_well_typed_programs_check(program in gen::program(4)) {
        let (ok, rendered) = check(&program);
        prop_assert!(ok, "{}\n{}", program, rendered);
    }
}

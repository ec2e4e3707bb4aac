//! Turns pest's "expected one of these rules" into a message a user can act on.

use super::parser::Rule;
use crate::diag::Diagnostic;
use crate::span::{SourceId, Span};
use pest::error::{Error, ErrorVariant, InputLocation};

/// A syntax error at the furthest point pest reached in `text[offset..]`.
pub fn syntax_error(source: SourceId, text: &str, offset: usize, error: &Error<Rule>) -> Diagnostic {
    let rule_at = match error.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut rules: Vec<String> = Vec::new();
    if let ErrorVariant::ParsingError { positives, .. } = &error.variant {
        for rule in positives {
            push_unique(&mut rules, describe(*rule));
        }
    }
    // pest locates errors by the rules it tried; literal tokens (`)`, `:`) can reach further.
    let attempts = error.parse_attempts();
    let token_at = attempts.as_ref().map_or(0, |a| a.max_position);
    let tokens: Vec<String> = attempts
        .map(|a| {
            a.expected_tokens()
                .iter()
                .map(|t| t.to_string())
                .filter(|t| is_punctuation(t))
                .collect()
        })
        .unwrap_or_default();
    // Lookaheads (`!keyword`) leave token attempts with nothing to suggest: ignore those.
    let token_at = if tokens.is_empty() { rule_at } else { token_at };
    let (at, mut expected) = if token_at > rule_at {
        (token_at, Vec::new())
    } else {
        (rule_at, rules)
    };
    if token_at >= rule_at {
        let operators_covered = expected.iter().any(|e| e == OPERATOR);
        for token in tokens {
            if !(operators_covered && OPERATORS.contains(&token.as_str())) {
                push_unique(&mut expected, format!("`{token}`"));
            }
        }
    }
    expected.retain(|e| !e.is_empty());
    // A token a rule's description already names (`=` in "`=` or a block") is said once.
    let described: Vec<String> = expected.iter().filter(|e| e.contains(' ')).cloned().collect();
    expected.retain(|e| e.contains(' ') || !described.iter().any(|d| d.contains(e.as_str())));
    if expected.iter().any(|e| e == OPERATOR) {
        // After a name, a call's `(` or axis list is rarely what was missing.
        expected.retain(|e| !matches!(e.as_str(), "`(`" | "`[`") && !e.starts_with("an axis list"));
    }
    let at = (offset + at).min(text.len());
    let found = token_at_pos(text, at);
    let span = Span::new(source, at..at + found.len());
    let found_text = if found.is_empty() {
        "end of file".to_string()
    } else {
        format!("`{}`", found.escape_debug())
    };
    let message = match expected.as_slice() {
        [] => format!("unexpected {found_text}"),
        list => format!("expected {}, found {found_text}", one_of(list)),
    };
    let label = if found.is_empty() {
        "the file ends here"
    } else {
        "unexpected here"
    };
    let mut diagnostic = Diagnostic::error(span, message).label(label);
    let operator_expected = expected.iter().any(|e| e == OPERATOR);
    // Only when the item ran into the next one (or the end) is an open `(` the likely cause.
    let ran_on = found.is_empty() || KEYWORDS[..2].contains(&found);
    let open_paren = unclosed_paren(text, offset, at);
    if let Some(help) = hint(text, at, found, operator_expected, open_paren.is_none()) {
        diagnostic = diagnostic.help(help);
    }
    if let Some(open) = open_paren.filter(|_| ran_on) {
        diagnostic = diagnostic.with(Span::new(source, open..open + 1), "this `(` is never closed");
    }
    diagnostic
}

const OPERATOR: &str = "an operator";
const OPERATORS: [&str; 13] = [
    "||", "&&", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "^",
];

/// Words are covered by the rule names; whitespace and comments are never the fix.
fn is_punctuation(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| c.is_ascii_punctuation() && !matches!(c, '#' | '.' | '_'))
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn one_of(list: &[String]) -> String {
    match list {
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
        [] => String::new(),
    }
}

/// The user's name for what a grammar rule stands for.
fn describe(rule: Rule) -> String {
    match rule {
        Rule::cam_def | Rule::fn_def | Rule::kw_cam | Rule::kw_fn => "a definition (`cam` or `fn`)",
        Rule::ident => "a name",
        Rule::number | Rule::default => "a number",
        Rule::params => "a parameter list in `(` `)`",
        Rule::param => "a parameter `name: [axes]`",
        Rule::axes => "an axis list in `[` `]`",
        Rule::block => "`=` or a block in `{` `}`",
        Rule::let_stmt | Rule::kw_let => "`let`",
        Rule::expr | Rule::operand | Rule::group | Rule::call | Rule::neg => "an expression",
        Rule::or
        | Rule::and
        | Rule::eq
        | Rule::ne
        | Rule::le
        | Rule::ge
        | Rule::lt
        | Rule::gt
        | Rule::add
        | Rule::sub
        | Rule::mul
        | Rule::div
        | Rule::pow => OPERATOR,
        _ => "",
    }
    .to_string()
}

/// The token at `at`: a word, a number, a two-character operator or one character.
fn token_at_pos(text: &str, at: usize) -> &str {
    let rest = &text[at..];
    let Some(first) = rest.chars().next() else {
        return "";
    };
    let len = if first.is_alphanumeric() || first == '_' || first == '.' {
        rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len())
    } else if ["==", "!=", "<=", ">=", "&&", "||", "**"]
        .iter()
        .any(|op| rest.starts_with(op))
    {
        2
    } else {
        first.len_utf8()
    };
    &rest[..len]
}

/// The last `(` between `from` and `to` left open, ignoring comments.
fn unclosed_paren(text: &str, from: usize, to: usize) -> Option<usize> {
    let mut open = Vec::new();
    let mut in_comment = false;
    for (i, byte) in text.as_bytes()[from..to].iter().enumerate() {
        match byte {
            b'\n' => in_comment = false,
            _ if in_comment => {}
            b'#' => in_comment = true,
            b'(' => open.push(from + i),
            b')' => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

const KEYWORDS: [&str; 3] = ["cam", "fn", "let"];

/// A likely fix for common slips.
/// `operator_expected`: an operator could have come here; `balanced`: no `(` is left open.
fn hint(text: &str, at: usize, found: &str, operator_expected: bool, balanced: bool) -> Option<String> {
    let after_operand = operator_expected && balanced;
    let before = text[..at].trim_end();
    let previous_word = before
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    let keyword_before = KEYWORDS.contains(&previous_word) && !found.starts_with(|c: char| c.is_alphabetic());
    match found {
        _ if found.starts_with('.') && crate::typeck::suggest::python_library(previous_word).is_some() => {
            crate::typeck::suggest::python_library(previous_word)
        }
        "**" => Some("powers are written `x^2`".into()),
        "*" if before.ends_with('*') => Some("powers are written `x^2`".into()),
        "}" => Some("a block ends with the expression it produces: `{ let a = ...; relu(a) }`".into()),
        _ if keyword_before => Some(format!(
            "`{previous_word}` is a keyword and cannot be used as a name"
        )),
        "&" | "|" => Some(format!("logical operators are doubled: `{found}{found}`")),
        "=" if operator_expected => {
            Some("comparison is `==`; bindings are `let name = value` inside `{ ... }`".into())
        }
        "cam" | "fn" | "let" if before.ends_with('(') || before.ends_with(',') || before.ends_with("let") => {
            Some(format!("`{found}` is a keyword and cannot be used as a name"))
        }
        "let" => Some("`let` bindings go inside a block: `cam name(...) { let x = ...; result }`".into()),
        "!" => Some("negation is written `x == 0`; there is no `!` operator".into()),
        _ if after_operand && found.starts_with(|c: char| c.is_alphabetic()) && !inside_block(before) => {
            Some("a body is one expression; use a block `{ let a = ...; a * 2 }` for several steps".into())
        }
        _ => None,
    }
}

/// Whether the text ends inside an unclosed `{`.
fn inside_block(before: &str) -> bool {
    before.matches('{').count() > before.matches('}').count()
}

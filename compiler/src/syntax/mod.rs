//! Source text to syntax tree. Parsing is per item: after a syntax error the parser skips to the
//! next line that starts with `cam` or `fn`, so one file reports all its broken definitions.

pub mod ast;
mod expected;
mod parser;
pub mod precedence;

use crate::diag::Diagnostic;
use crate::span::{SourceId, Span};
use ast::File;
use parser::{CamParser, ItemBuilder, Rule};
use pest::Parser;

/// Programs larger than this are refused: a CAM formula is a few lines, and the limit bounds the
/// parser's memory on hostile input.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// The deepest nesting of parentheses a program may have (the parser recurses on them).
pub const MAX_NESTING: usize = 128;

/// Parses a whole file; the items that parsed are returned along with every syntax error.
pub fn parse(source: SourceId, text: &str) -> (File, Vec<Diagnostic>) {
    let mut file = File {
        source,
        items: Vec::new(),
    };
    if text.len() > MAX_SOURCE_BYTES {
        let error =
            Diagnostic::error(Span::new(source, 0..0), "file is too large to be a program").label(format!(
                "{} bytes; programs are limited to {} bytes",
                text.len(),
                MAX_SOURCE_BYTES
            ));
        return (file, vec![error]);
    }
    if let Some(at) = too_deep(text) {
        let error = Diagnostic::error(Span::new(source, at..at + 1), "parentheses are nested too deeply")
            .label(format!("more than {MAX_NESTING} levels"))
            .help("split the expression into `let` bindings");
        return (file, vec![error]);
    }
    pest::set_error_detail(true);
    let mut diagnostics = Vec::new();
    let mut offset = skip_trivia(text, 0);
    while offset < text.len() {
        let rest = &text[offset..];
        match CamParser::parse(Rule::item_at, rest) {
            Ok(mut pairs) => {
                let pair = pairs.next().expect("grammar: item_at yields one item");
                let end = offset + pair.as_span().end();
                match ItemBuilder::new(source, offset).item(pair) {
                    Ok(item) => file.items.push(item),
                    Err(error) => diagnostics.push(error),
                }
                offset = skip_trivia(text, end);
            }
            Err(error) => {
                let diagnostic = expected::syntax_error(source, text, offset, &error);
                let at = diagnostic.primary.0.start as usize;
                diagnostics.push(diagnostic);
                // The error may be stray text after a complete item: keep that item.
                if let Ok(mut pairs) = CamParser::parse(Rule::item_bare, rest) {
                    let pair = pairs.next().expect("grammar: item_bare yields one item");
                    if skip_trivia(text, offset + pair.as_span().end()) >= at {
                        match ItemBuilder::new(source, offset).item(pair) {
                            Ok(item) => file.items.push(item),
                            Err(error) => diagnostics.push(error),
                        }
                    }
                }
                offset = next_item_start(text, at.max(offset + 1));
            }
        }
    }
    (file, diagnostics)
}

/// Skips whitespace and `#` comments.
fn skip_trivia(text: &str, mut at: usize) -> usize {
    let bytes = text.as_bytes();
    while at < bytes.len() {
        match bytes[at] {
            b' ' | b'\t' | b'\r' | b'\n' => at += 1,
            b'#' => at = text[at..].find('\n').map_or(text.len(), |n| at + n),
            _ => break,
        }
    }
    at
}

/// The first line start at or after `from` that begins with the keyword `cam` or `fn`.
fn next_item_start(text: &str, from: usize) -> usize {
    let mut at = from.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    while at < text.len() {
        let line_start = at == 0 || text.as_bytes()[at - 1] == b'\n';
        if line_start {
            let indented = at + text[at..].len() - text[at..].trim_start_matches([' ', '\t']).len();
            if starts_item(&text[indented..]) {
                return indented;
            }
        }
        at = text[at..].find('\n').map_or(text.len(), |n| at + n + 1);
    }
    text.len()
}

fn starts_item(line: &str) -> bool {
    ["cam", "fn"].iter().any(|kw| {
        line.strip_prefix(kw)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    })
}

/// Where parentheses first nest deeper than [`MAX_NESTING`], ignoring comments.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_comment = false;
    for (at, byte) in text.bytes().enumerate() {
        match byte {
            b'\n' => in_comment = false,
            _ if in_comment => {}
            b'#' => in_comment = true,
            b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(at);
                }
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

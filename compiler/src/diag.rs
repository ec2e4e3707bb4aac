//! Diagnostics: an error or warning with labelled spans, rendered with ariadne.

use crate::span::{SourceMap, Span};
use ariadne::{Color, Config, IndexType, Label, Report, ReportKind};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a program, with the place it is at and what would fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// The span the message is about; its label text may be empty.
    pub primary: (Span, String),
    /// Further places that explain the problem (a declaration, the other operand, ...).
    pub secondary: Vec<(Span, String)>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            primary: (span, String::new()),
            secondary: Vec::new(),
            help: None,
        }
    }

    pub fn warning(span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, message)
        }
    }

    /// Text under the primary span.
    pub fn label(mut self, text: impl Into<String>) -> Diagnostic {
        self.primary.1 = text.into();
        self
    }

    pub fn with(mut self, span: Span, text: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, text.into()));
        self
    }

    pub fn help(mut self, text: impl Into<String>) -> Diagnostic {
        self.help = Some(text.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic as ariadne does on a terminal (`color`) or as plain text.
    pub fn render(&self, sources: &SourceMap, color: bool) -> String {
        let config = Config::default()
            .with_index_type(IndexType::Byte)
            .with_color(color);
        let (kind, accent) = match self.severity {
            Severity::Error => (ReportKind::Error, Color::Red),
            Severity::Warning => (ReportKind::Warning, Color::Yellow),
        };
        let located = |span: Span| {
            let file = sources.get(span.source);
            (file.name.clone(), clamp_to_text(&file.text, span))
        };
        let mut report = Report::build(kind, located(self.primary.0))
            .with_config(config)
            .with_message(&self.message);
        report.add_label(labelled(located(self.primary.0), &self.primary.1).with_color(accent));
        for (span, text) in &self.secondary {
            let label = labelled(located(*span), text);
            report.add_label(label.with_color(Color::Blue));
        }
        if let Some(help) = &self.help {
            report.set_help(help);
        }
        let cache = ariadne::sources(sources.files().map(|(_, f)| (f.name.clone(), f.text.clone())));
        let mut out = Vec::new();
        // Writing into a Vec cannot fail; a failure would only lose the rendering, never panic.
        let _ = report.finish().write(cache, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn labelled(span: (String, std::ops::Range<usize>), text: &str) -> Label<(String, std::ops::Range<usize>)> {
    let label = Label::new(span);
    if text.is_empty() {
        label
    } else {
        label.with_message(text)
    }
}

/// Keeps a span inside its text and on character boundaries, so rendering never slices badly.
fn clamp_to_text(text: &str, span: Span) -> std::ops::Range<usize> {
    let mut start = (span.start as usize).min(text.len());
    let mut end = (span.end as usize).clamp(start, text.len());
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    while !text.is_char_boundary(end) {
        end += 1;
    }
    start..end
}

/// Renders all diagnostics, errors and warnings in the order given.
pub fn render_all(diagnostics: &[Diagnostic], sources: &SourceMap, color: bool) -> String {
    diagnostics.iter().map(|d| d.render(sources, color)).collect()
}

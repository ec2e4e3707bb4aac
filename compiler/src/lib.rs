//! camc compiler: `.cam` source → syntax tree → typed program → IR → code generators.
//! It knows nothing of files, devices or metrics: callers hand it source text.

pub mod axes;
pub mod codegen;
pub mod diag;
pub mod dims;
pub mod dtype;
pub mod grad;
pub mod ir;
pub mod ops;
pub mod opt;
pub mod resize;
pub mod span;
pub mod stdlib;
pub mod syntax;
pub mod typeck;
pub mod typed;

use diag::Diagnostic;
use span::{SourceId, SourceMap};
use typed::Program;

/// The result of checking one source file against the standard library.
pub struct Checked {
    pub sources: SourceMap,
    /// The file that was checked.
    pub user: SourceId,
    /// Present when there is no error.
    pub program: Option<Program>,
    /// Errors and warnings, in the order found.
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    pub fn render(&self, color: bool) -> String {
        diag::render_all(&self.diagnostics, &self.sources, color)
    }
}

/// Parses and type-checks `text` (shown as `name` in diagnostics); every stdlib method is in
/// scope, and the file's own definitions shadow them.
pub fn check_source(name: &str, text: &str) -> Checked {
    let mut sources = SourceMap::new();
    let user = sources.add(name, text);
    let (file, mut diagnostics) = syntax::parse(user, text);
    let mut files = vec![file];
    for (method, source) in stdlib::FILES {
        let id = sources.add(stdlib::display_name(method), *source);
        let (parsed, errors) = syntax::parse(id, source);
        diagnostics.extend(errors);
        files.push(parsed);
    }
    let (program, errors) = typeck::check(&files, user);
    diagnostics.extend(errors);
    // File order reads best; the sort is stable, so one place's diagnostics keep their order.
    diagnostics.sort_by_key(|d| (d.primary.0.source, d.primary.0.start));
    let program = program.filter(|_| !diagnostics.iter().any(Diagnostic::is_error));
    Checked {
        sources,
        user,
        program,
        diagnostics,
    }
}

/// Checks a stdlib method's file as the user file.
pub fn check_stdlib(name: &str) -> Option<Checked> {
    stdlib::source(name).map(|text| check_source(&stdlib::display_name(name), text))
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Lower(#[from] ir::LowerError),
    /// A compiler bug: lowering produced IR that breaks its invariants.
    #[error("internal compiler error: {0}")]
    Invalid(#[from] ir::Invalid),
}

/// The optimized IR of the `cam` `root`, with scalar parameters set from `knobs`.
pub fn compile_kernel(
    program: &Program,
    root: typed::FuncId,
    knobs: &std::collections::HashMap<String, f32>,
    level: opt::Level,
) -> Result<ir::Kernel, CompileError> {
    let mut kernel = ir::lower(program, root, knobs)?;
    opt::optimize(&mut kernel, level)?;
    Ok(kernel)
}

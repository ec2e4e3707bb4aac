//! The PROGRAM argument of `run`, `emit` and `eval` (docs/cli.md): `path.cam` (a file with one
//! `cam`), `path.cam:name`, or the name of a stdlib method.

use crate::output;
use crate::Reported;
use camc_compiler::diag::Diagnostic;
use camc_compiler::span::Span;
use camc_runtime::program::ResolveError;
pub use camc_runtime::program::Resolved;

/// Resolves the PROGRAM argument, printing its diagnostics (warnings too) to stderr.
pub fn resolve(spec: &str) -> Result<Resolved, Reported> {
    match camc_runtime::program::resolve(spec) {
        Ok(resolved) => {
            eprint!("{}", resolved.checked.render(output::color_stderr()));
            Ok(resolved)
        }
        Err(ResolveError::Message(message)) => {
            output::error(&message);
            Err(Reported)
        }
        Err(ResolveError::Errors { checked, summary }) => {
            eprint!("{}", checked.render(output::color_stderr()));
            output::error(&summary);
            Err(Reported)
        }
    }
}

/// Running a program.
pub trait Fail {
    fn fail(&self, message: impl std::fmt::Display, span: Option<Span>, label: &str) -> Reported;
}

impl Fail for Resolved {
    /// Reports an error about running the program: rendered at the program's source where the
    /// error has a place there (`span`, labelled `label`: a parameter whose cache tensor is
    /// missing, the result that is not finite), plain otherwise.
    fn fail(&self, message: impl std::fmt::Display, span: Option<Span>, label: &str) -> Reported {
        match span {
            Some(span) => eprint!(
                "{}",
                Diagnostic::error(span, message.to_string())
                    .label(label)
                    .render(&self.checked.sources, output::color_stderr())
            ),
            None => output::error(&message.to_string()),
        }
        Reported
    }
}

/// The optimized kernel of a resolved program with `--set` values.
pub fn compile(
    resolved: &Resolved,
    knobs: &std::collections::HashMap<String, f32>,
    level: camc_compiler::opt::Level,
) -> Result<camc_compiler::ir::Kernel, Reported> {
    camc_compiler::compile_kernel(resolved.program(), resolved.root, knobs, level).map_err(|e| {
        output::error(&e.to_string());
        Reported
    })
}

/// `NAME=VALUE` for `--set`.
pub fn parse_knob(text: &str) -> Result<(String, f32), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not NAME=VALUE"))?;
    let value: f32 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("`{text}`: the value must be finite"));
    }
    Ok((name.trim().to_string(), value))
}

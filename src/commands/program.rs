//! The PROGRAM argument of `run`, `emit` and `eval` (docs/cli.md): `path.cam` (a file with one
//! `cam`), `path.cam:name`, or the name of a stdlib method.

use super::source;
use crate::output;
use crate::Reported;
use camc_compiler::diag::Diagnostic;
use camc_compiler::span::Span;
use camc_compiler::typed::{FuncId, ItemKind, Program};
use camc_compiler::{check_source, check_stdlib, stdlib, Checked};
use std::path::Path;

/// A checked program and the `cam` to run.
pub struct Resolved {
    pub checked: Checked,
    pub root: FuncId,
    /// The `.cam` file it was read from (none for a stdlib method).
    pub file: Option<std::path::PathBuf>,
}

impl Resolved {
    pub fn program(&self) -> &Program {
        self.checked
            .program
            .as_ref()
            .expect("resolved programs are well-typed")
    }
}

pub fn resolve(spec: &str) -> Result<Resolved, Reported> {
    let (path, name) = match spec.rsplit_once(':') {
        Some((path, name)) if path.ends_with(".cam") => (Some(path), Some(name)),
        _ if spec.ends_with(".cam") || Path::new(spec).is_file() => (Some(spec), None),
        _ => (None, Some(spec)),
    };
    let checked = match path {
        Some(path) => {
            let text = source::read(Path::new(path))?;
            check_source(path, &text)
        }
        None => {
            let method = name.unwrap_or_default();
            check_stdlib(method).ok_or_else(|| {
                let hint = camc_compiler::typeck::suggest::closest(method, stdlib::names())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                output::error(&format!(
                    "`{method}` is neither a .cam file nor a stdlib method{hint}; `camc stdlib` lists them"
                ));
                Reported
            })?
        }
    };
    eprint!("{}", checked.render(output::color_stderr()));
    let Some(program) = &checked.program else {
        output::error(&format!("`{}` has errors", path.unwrap_or(spec)));
        return Err(Reported);
    };
    let cams: Vec<FuncId> = program.cams().collect();
    let root = match name {
        Some(name) => match program.exported(name) {
            Some(id) if program.function(id).kind == ItemKind::Cam => id,
            Some(_) => {
                output::error(&format!("`{name}` is a `fn`; only a `cam` can be run"));
                return Err(Reported);
            }
            None => {
                output::error(&format!(
                    "`{}` defines no cam named `{name}`",
                    path.unwrap_or("the stdlib")
                ));
                return Err(Reported);
            }
        },
        None => match cams.as_slice() {
            [one] => *one,
            [] => {
                output::error(&format!("`{spec}` defines no cam"));
                return Err(Reported);
            }
            several => {
                let names: Vec<&str> = several
                    .iter()
                    .map(|&id| program.function(id).name.as_str())
                    .collect();
                output::error(&format!(
                    "`{spec}` defines several cams ({}); choose one with `{spec}:NAME`",
                    names.join(", ")
                ));
                return Err(Reported);
            }
        },
    };
    Ok(Resolved {
        checked,
        root,
        file: path.map(std::path::PathBuf::from),
    })
}

impl Resolved {
    /// Reports an error about running the program: rendered at the program's source where the
    /// error has a place there (`span`, labelled `label`: a parameter whose cache tensor is
    /// missing, the result that is not finite), plain otherwise.
    pub fn fail(&self, message: impl std::fmt::Display, span: Option<Span>, label: &str) -> Reported {
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

/// Every stdlib method's kernel with default knobs, by name.
pub fn stdlib_kernels() -> Vec<(&'static str, camc_compiler::ir::Kernel)> {
    stdlib::names()
        .filter_map(|method| {
            let checked = check_stdlib(method)?;
            let program = checked.program.as_ref()?;
            let root = program.exported(method)?;
            let kernel = camc_compiler::compile_kernel(
                program,
                root,
                &std::collections::HashMap::new(),
                camc_compiler::opt::Level::Exact,
            )
            .ok()?;
            Some((method, kernel))
        })
        .collect()
}

//! Naming a program: `path.cam` (a file with one `cam`), `path.cam:name`, the name of a stdlib
//! method, or (from Python) the source text itself. One home for the rules the CLI's PROGRAM
//! argument and `camc.compile` share (docs/cli.md, docs/python.md).

use camc_compiler::typed::{FuncId, ItemKind, Program};
use camc_compiler::{check_source, check_stdlib, stdlib, Checked};
use std::path::{Path, PathBuf};

/// The largest program file camc reads (the whole stdlib is a few KiB).
pub const MAX_PROGRAM_BYTES: u64 = 1 << 20;

/// A checked program and the `cam` to run.
pub struct Resolved {
    pub checked: Checked,
    pub root: FuncId,
    /// The `.cam` file it was read from (none for a stdlib method or source text).
    pub file: Option<PathBuf>,
}

impl Resolved {
    pub fn program(&self) -> &Program {
        self.checked
            .program
            .as_ref()
            .expect("resolved programs are well-typed")
    }

    /// The name of the `cam` it runs.
    pub fn name(&self) -> &str {
        &self.program().function(self.root).name
    }
}

pub enum ResolveError {
    /// A file that cannot be read, an unknown method, no or several cams: one line.
    Message(String),
    /// The source does not check: `checked` holds the diagnostics, `summary` says whose.
    Errors { checked: Box<Checked>, summary: String },
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Message(message) => f.write_str(message),
            ResolveError::Errors { checked, summary } => {
                write!(f, "{}{summary}", checked.render(false))
            }
        }
    }
}

/// Reads a `.cam` file: a regular file of at most [`MAX_PROGRAM_BYTES`], UTF-8 text (a cache
/// given where a program is expected gets a hint).
pub fn read_source(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let cannot = |e: std::io::Error| format!("cannot read `{shown}`: {e}");
    let file = std::fs::File::open(path).map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(format!(
            "`{shown}` is not a regular file; a program is a .cam file"
        ));
    }
    if path.extension().is_some_and(|x| x == "safetensors" || x == "npy") {
        return Err(format!(
            "`{shown}` is a cache, not a program: did the shell expand a glob? quote it, as in --cache 'shards/*.safetensors'"
        ));
    }
    if metadata.len() > MAX_PROGRAM_BYTES {
        return Err(format!(
            "`{shown}` holds {} bytes; a program file is at most {} MiB",
            metadata.len(),
            MAX_PROGRAM_BYTES >> 20
        ));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_PROGRAM_BYTES), &mut bytes)
        .map_err(cannot)?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format!("`{shown}` is not a text file: invalid UTF-8 at byte {at}")
    })
}

/// `path.cam`, `path.cam:name` or a stdlib method's name.
pub fn resolve(spec: &str) -> Result<Resolved, ResolveError> {
    let (path, name) = match spec.rsplit_once(':') {
        Some((path, name)) if path.ends_with(".cam") => (Some(path), Some(name)),
        _ if spec.ends_with(".cam") || Path::new(spec).is_file() => (Some(spec), None),
        _ => (None, Some(spec)),
    };
    let checked = match path {
        Some(path) => {
            let text = read_source(Path::new(path)).map_err(ResolveError::Message)?;
            check_source(path, &text)
        }
        None => {
            let method = name.unwrap_or_default();
            check_stdlib(method).ok_or_else(|| {
                let hint = camc_compiler::typeck::suggest::closest(method, stdlib::names())
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                ResolveError::Message(format!(
                    "`{method}` is neither a .cam file nor a stdlib method{hint}; `camc stdlib` lists them"
                ))
            })?
        }
    };
    finish(checked, name, path, spec)
}

/// Source text given directly (Python's `camc.compile("cam f(A: [k,h,w]) = ...")`), its one
/// `cam`.
pub fn resolve_text(text: &str) -> Result<Resolved, ResolveError> {
    const NAME: &str = "<source>";
    let mut resolved = finish(check_source(NAME, text), None, Some(NAME), NAME)?;
    resolved.file = None;
    Ok(resolved)
}

/// Whether a program argument is source text rather than a name or a path: it holds a
/// definition (names and paths hold no spaces around `cam`, no newline, no `{` or `=`).
pub fn is_source_text(spec: &str) -> bool {
    spec.contains('\n') || (spec.trim_start().starts_with("cam ") && spec.contains('('))
}

/// The resolved program, once `checked` has passed (`file`: where it was read from).
fn finish(
    checked: Checked,
    name: Option<&str>,
    file: Option<&str>,
    spec: &str,
) -> Result<Resolved, ResolveError> {
    let Some(program) = &checked.program else {
        let errors = checked.errors();
        return Err(ResolveError::Errors {
            summary: format!(
                "`{}` has {errors} error{}",
                file.unwrap_or(spec),
                if errors == 1 { "" } else { "s" }
            ),
            checked: Box::new(checked),
        });
    };
    let root = choose(program, name, file, spec)?;
    Ok(Resolved {
        checked,
        root,
        file: file.map(PathBuf::from),
    })
}

/// The `cam` named `name`, or the program's only one (`file`: where it was read from).
fn choose(
    program: &Program,
    name: Option<&str>,
    file: Option<&str>,
    spec: &str,
) -> Result<FuncId, ResolveError> {
    let fail = |m: String| Err(ResolveError::Message(m));
    match name {
        Some(name) => match program.exported(name) {
            Some(id) if program.function(id).kind == ItemKind::Cam => Ok(id),
            Some(_) => fail(format!("`{name}` is a `fn`; only a `cam` can be run")),
            None => fail(format!(
                "`{}` defines no cam named `{name}`",
                file.unwrap_or("the stdlib")
            )),
        },
        None => {
            let cams: Vec<FuncId> = program.cams().collect();
            match cams.as_slice() {
                [one] => Ok(*one),
                [] => fail(format!("`{spec}` defines no cam")),
                several => {
                    let names: Vec<&str> = several
                        .iter()
                        .map(|&id| program.function(id).name.as_str())
                        .collect();
                    fail(format!(
                        "`{spec}` defines several cams ({}); choose one with `{spec}:NAME`",
                        names.join(", ")
                    ))
                }
            }
        }
    }
}

/// Every stdlib method's kernel with default knobs, by name (the baselines of `eval --stdlib`
/// and of a search).
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

//! `camc._camc`: the native part of `import camc` (docs/python.md). It resolves and compiles
//! programs and runs them through the CLI's executors, on NumPy arrays (without copying
//! contiguous ones) or on GPU memory the caller owns; `camc/_program.py` turns torch tensors
//! into those. The GIL is released while a kernel runs. Errors are the `camc.Error`
//! subclasses of `camc/_errors.py`, with the CLI's messages.

mod inputs;
mod metrics;
mod program;
mod search;

use camc_runtime::program::{is_source_text, resolve, resolve_text};
use pyo3::prelude::*;

/// The `camc.Error` subclasses, by the name `camc/_errors.py` gives them.
#[derive(Copy, Clone)]
pub(crate) enum Kind {
    Program,
    Input,
    InputType,
    Device,
}

/// Raises `camc.<kind>(message)`.
pub(crate) fn error(py: Python<'_>, kind: Kind, message: impl Into<String>) -> PyErr {
    let name = match kind {
        Kind::Program => "ProgramError",
        Kind::Input => "InputError",
        Kind::InputType => "InputTypeError",
        Kind::Device => "DeviceError",
    };
    let message = message.into();
    match py.import("camc._errors").and_then(|module| module.getattr(name)) {
        Ok(class) => match class.call1((message.clone(),)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        },
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(message),
    }
}

/// Resolves and checks a program: a stdlib method name, `path.cam`, `path.cam:name`, or source
/// text. `camc.compile` (camc/_program.py) caches the result.
#[pyfunction]
fn compile(py: Python<'_>, spec: &str) -> PyResult<program::Program> {
    let resolved = if is_source_text(spec) {
        resolve_text(spec)
    } else {
        resolve(spec)
    };
    let resolved = resolved.map_err(|e| error(py, Kind::Program, e.to_string()))?;
    Ok(program::Program::new(resolved))
}

/// The source text of a standard-library method (as `camc stdlib NAME` prints it), or None.
#[pyfunction]
fn stdlib_source(name: &str) -> Option<&'static str> {
    camc_compiler::stdlib::source(name)
}

#[pymodule]
fn _camc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(stdlib_source, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<metrics::CacheMetrics>()?;
    m.add_function(wrap_pyfunction!(metrics::write_eval_report, m)?)?;
    m.add_class::<program::Program>()?;
    m.add_function(wrap_pyfunction!(search::search, m)?)?;
    Ok(())
}

//! `camc._camc`: the native part of `import camc` (docs/python.md). A compiled program is run
//! on NumPy arrays through the same executors as the CLI, without copying contiguous inputs,
//! with the GIL released while it runs. Errors are `camc.Error` subclasses defined in
//! `camc/_errors.py`, with the CLI's messages.

use camc_compiler::axes::Axis;
use camc_compiler::dims::Dims;
use camc_compiler::ir::{InputKind, Kernel};
use camc_compiler::opt::Level;
use camc_compiler::typed::FuncId;
use camc_compiler::{check_source, check_stdlib, compile_kernel, Checked};
use camc_runtime::batch::{Batch, Data};
use camc_runtime::exec::cpu::CpuExecutor;
use camc_runtime::exec::{Executor, Outputs};
use camc_runtime::run::scaled_shape;
use numpy::{PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::collections::HashMap;
use std::sync::Mutex;

/// Raises `camc.<kind>(message)`.
fn error(py: Python<'_>, kind: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    match py.import("camc._errors").and_then(|module| module.getattr(kind)) {
        Ok(class) => match class.call1((message.clone(),)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        },
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(message),
    }
}

/// A checked program and the `cam` it runs.
#[pyclass(frozen, module = "camc")]
pub struct Program {
    checked: Checked,
    root: FuncId,
    name: String,
    /// Kernels by the scalar values set at call time (bit patterns, sorted by name).
    kernels: Mutex<HashMap<Vec<(String, u32)>, Kernel>>,
}

/// `name`, `path.cam`, `path.cam:name` or source text: the checked program and its `cam`.
fn resolve(py: Python<'_>, spec: &str) -> PyResult<(Checked, FuncId)> {
    let is_source = spec.contains("cam ") && (spec.contains('=') || spec.contains('{'));
    let (checked, name) = if is_source {
        (check_source("<source>", spec), None)
    } else {
        let (path, name) = match spec.rsplit_once(':') {
            Some((path, name)) if path.ends_with(".cam") => (Some(path), Some(name)),
            _ if spec.ends_with(".cam") => (Some(spec), None),
            _ => (None, Some(spec)),
        };
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| error(py, "InputError", format!("cannot read `{path}`: {e}")))?;
                (check_source(path, &text), name)
            }
            None => {
                let checked = check_stdlib(spec).ok_or_else(|| {
                    error(
                        py,
                        "ProgramError",
                        format!("`{spec}` is neither a .cam file, nor source text, nor a stdlib method"),
                    )
                })?;
                (checked, name)
            }
        }
    };
    let Some(program) = &checked.program else {
        return Err(error(py, "ProgramError", checked.render(false)));
    };
    let cams: Vec<FuncId> = program.cams().collect();
    let root = match name {
        Some(name) => program
            .exported(name)
            .ok_or_else(|| error(py, "ProgramError", format!("no cam named `{name}`")))?,
        None => match cams.as_slice() {
            [one] => *one,
            [] => return Err(error(py, "ProgramError", "the source defines no cam")),
            _ => {
                return Err(error(
                    py,
                    "ProgramError",
                    "the source defines several cams; choose one with `path.cam:NAME`",
                ))
            }
        },
    };
    Ok((checked, root))
}

/// Compiles a program: a stdlib method name, `path.cam`, `path.cam:name` or source text.
#[pyfunction]
fn compile(py: Python<'_>, spec: &str) -> PyResult<Program> {
    let (checked, root) = resolve(py, spec)?;
    let name = checked
        .program
        .as_ref()
        .map(|p| p.function(root).name.clone())
        .unwrap_or_default();
    Ok(Program {
        checked,
        root,
        name,
        kernels: Mutex::new(HashMap::new()),
    })
}

/// One input as the caller gave it.
enum Given<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F16(PyReadonlyArrayDyn<'py, half::f16>),
}

impl Given<'_> {
    fn shape(&self) -> Vec<usize> {
        match self {
            Given::F32(a) => a.shape().to_vec(),
            Given::F16(a) => a.shape().to_vec(),
        }
    }

    fn data(&self) -> Result<Data<'_>, String> {
        // `as_slice` also accepts Fortran order, whose values are not in the order camc reads.
        let c_order = match self {
            Given::F32(a) => a.is_c_contiguous(),
            Given::F16(a) => a.is_c_contiguous(),
        };
        let not_contiguous = || "is not C-contiguous; pass np.ascontiguousarray(x)".to_string();
        if !c_order {
            return Err(not_contiguous());
        }
        Ok(match self {
            Given::F32(a) => Data::F32(a.as_slice().map_err(|_| not_contiguous())?),
            Given::F16(a) => Data::F16(a.as_slice().map_err(|_| not_contiguous())?),
        })
    }
}

impl Program {
    fn kernel(&self, py: Python<'_>, knobs: &HashMap<String, f32>) -> PyResult<Kernel> {
        let mut key: Vec<(String, u32)> = knobs.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect();
        key.sort();
        let mut kernels = self.kernels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(kernel) = kernels.get(&key) {
            return Ok(kernel.clone());
        }
        let program = self
            .checked
            .program
            .as_ref()
            .ok_or_else(|| error(py, "ProgramError", "the program does not check"))?;
        let kernel = compile_kernel(program, self.root, knobs, Level::Exact)
            .map_err(|e| error(py, "ProgramError", e.to_string()))?;
        kernels.insert(key, kernel.clone());
        Ok(kernel)
    }
}

/// The axis sizes the inputs give (each input `[n, axes of its type...]`), and `n`.
fn sizes_of(kernel: &Kernel, shapes: &[Vec<usize>]) -> Result<(usize, Dims), String> {
    let mut n = None;
    let mut sizes: HashMap<Axis, (usize, &str)> = HashMap::new();
    for (input, shape) in kernel.inputs.iter().zip(shapes) {
        let axes: Vec<Axis> = Axis::ALL.into_iter().filter(|a| input.ty.contains(*a)).collect();
        let lead = usize::from(input.kind == InputKind::PerImage);
        if shape.len() != lead + axes.len() {
            let expected = if lead == 1 {
                format!(
                    "[n,{}]",
                    axes.iter().map(|a| a.name()).collect::<Vec<_>>().join(",")
                )
            } else {
                format!("{}", input.ty)
            };
            return Err(format!(
                "`{}` has shape {shape:?}; the program reads `{}: {}`, so it must be {expected} ({} axes)",
                input.name,
                input.name,
                input.ty,
                lead + axes.len()
            ));
        }
        if lead == 1 {
            match n {
                Some((images, ref other)) if images != shape[0] => {
                    return Err(format!(
                        "`{}` holds {} images, `{other}` {images}",
                        input.name, shape[0]
                    ))
                }
                None => n = Some((shape[0], input.name.clone())),
                _ => {}
            }
        }
        for (axis, &size) in axes.iter().zip(&shape[lead..]) {
            match sizes.get(axis) {
                Some(&(other, name)) if other != size => {
                    return Err(format!(
                        "`{}` has {} = {size}, `{name}` has {} = {other}",
                        input.name,
                        axis.name(),
                        axis.name()
                    ))
                }
                _ => {
                    sizes.insert(*axis, (size, &input.name));
                }
            }
        }
    }
    let size = |axis| sizes.get(&axis).map_or(1, |&(s, _)| s);
    let dims = Dims::new(size(Axis::K), size(Axis::D), size(Axis::H), size(Axis::W));
    let n = n.map_or(1, |(n, _)| n);
    Ok((n, dims))
}

#[pymethods]
impl Program {
    /// The `cam`'s parameters as `(name, type)`, e.g. `("A", "[k,h,w]")`.
    #[getter]
    fn params(&self) -> Vec<(String, String)> {
        let Some(program) = &self.checked.program else {
            return Vec::new();
        };
        program
            .function(self.root)
            .params
            .iter()
            .map(|p| (p.name.clone(), p.ty.to_string()))
            .collect()
    }

    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Runs the program: tensors and scalar parameters by keyword; `size=(H, W)` post-processes
    /// the maps (min-max, bilinear resize, min-max) like `camc run`, else the raw maps come back
    /// like `camc run --raw`.
    #[pyo3(signature = (*, size = None, **kwargs))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        size: Option<Bound<'py, PyAny>>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        let mut knobs = HashMap::new();
        let mut arrays: HashMap<String, Bound<'py, PyAny>> = HashMap::new();
        if let Some(kwargs) = &kwargs {
            for (key, value) in kwargs.iter() {
                let key: String = key.extract()?;
                if value.is_instance_of::<pyo3::types::PyFloat>()
                    || value.is_instance_of::<pyo3::types::PyInt>()
                {
                    let v: f64 = value.extract()?;
                    knobs.insert(key, v as f32);
                } else {
                    arrays.insert(key, value);
                }
            }
        }
        let kernel = self.kernel(py, &knobs)?;
        let mut given = Vec::with_capacity(kernel.inputs.len());
        for input in &kernel.inputs {
            let value = arrays.remove(&input.name).ok_or_else(|| {
                error(
                    py,
                    "InputError",
                    format!(
                        "missing tensor `{}`: the program reads `{}: {}`",
                        input.name, input.name, input.ty
                    ),
                )
            })?;
            let array = if let Ok(a) = value.extract::<PyReadonlyArrayDyn<'py, f32>>() {
                Given::F32(a)
            } else if let Ok(a) = value.extract::<PyReadonlyArrayDyn<'py, half::f16>>() {
                Given::F16(a)
            } else {
                return Err(error(
                    py,
                    "InputTypeError",
                    format!(
                        "`{}` must be a NumPy array of float32 or float16, got {}",
                        input.name,
                        value.get_type().name()?
                    ),
                ));
            };
            given.push(array);
        }
        if let Some(name) = arrays.keys().next() {
            return Err(error(
                py,
                "InputError",
                format!(
                    "`{name}` is not a parameter of `{}`; it has {:?}",
                    self.name,
                    self.params()
                ),
            ));
        }
        let shapes: Vec<Vec<usize>> = given.iter().map(Given::shape).collect();
        let (n, dims) = sizes_of(&kernel, &shapes).map_err(|m| error(py, "InputError", m))?;
        let raw_shape = Outputs::raw_shape(&kernel, dims);
        let outputs = match &size {
            None => Outputs::raw(),
            Some(size) => {
                let wanted: Vec<usize> = size
                    .cast::<PyTuple>()
                    .map_err(|_| error(py, "InputTypeError", "size must be a tuple (H, W)"))?
                    .extract()?;
                let shape = scaled_shape(&raw_shape, &wanted).ok_or_else(|| {
                    error(
                        py,
                        "InputError",
                        format!("size {wanted:?} does not fit the program's map of shape {raw_shape:?}"),
                    )
                })?;
                Outputs::processed(shape)
            }
        };
        let map_shape = outputs.processed.clone().unwrap_or_else(|| raw_shape.clone());
        let data: Vec<Data<'_>> = given
            .iter()
            .zip(&kernel.inputs)
            .map(|(g, input)| {
                g.data()
                    .map_err(|m| error(py, "InputError", format!("`{}` {m}", input.name)))
            })
            .collect::<PyResult<_>>()?;
        let map_len: usize = map_shape.iter().product();
        let mut out = vec![0.0f32; n * map_len];
        let mut counts = vec![0usize; n];
        let processed = outputs.processed.is_some();
        let result = py.detach(|| -> Result<(), String> {
            let mut executor = CpuExecutor::new(&kernel, dims, outputs).map_err(|e| e.to_string())?;
            let batch = Batch::new(n, data);
            let (raw, post) = if processed {
                (&mut [][..], &mut out[..])
            } else {
                (&mut out[..], &mut [][..])
            };
            executor
                .run_into(&batch, raw, post, &mut counts)
                .map_err(|e| e.to_string())
        });
        result.map_err(|m| error(py, "InputError", m))?;
        let mut shape = vec![n];
        shape.extend(&map_shape);
        let array = numpy::PyArray1::from_vec(py, out);
        array.reshape(shape)
    }

    /// The compiled form: `"ir"` (the optimized IR) or `"cuda"` (CUDA C).
    fn emit(&self, py: Python<'_>, target: &str) -> PyResult<String> {
        let kernel = self.kernel(py, &HashMap::new())?;
        match target {
            "ir" => Ok(camc_compiler::ir::print(&kernel)),
            "cuda" => {
                use camc_compiler::codegen::cuda;
                cuda::write(&kernel, &cuda::uniform_variants(&kernel))
                    .map(|s| s.text)
                    .map_err(|e| error(py, "ProgramError", e.to_string()))
            }
            other => Err(error(
                py,
                "InputError",
                format!("target `{other}`: this version emits \"ir\" or \"cuda\" (the CLI also emits clif and ptx)"),
            )),
        }
    }

    fn __repr__(&self) -> String {
        let params: Vec<String> = self
            .params()
            .into_iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect();
        format!("camc.Program({}({}))", self.name, params.join(", "))
    }
}

#[pymodule]
fn _camc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_class::<Program>()?;
    Ok(())
}

//! `camc._camc.Program`: a resolved program, its kernels by scalar values, and its executors
//! by sizes and outputs, kept for the next call (a CAM is computed batch after batch on the
//! same sizes).

use crate::inputs::{dtype_named, sizes_of, Host};
use crate::{error, Kind};
use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use camc_runtime::batch::{Batch, Data};
use camc_runtime::emit::Emit;
use camc_runtime::exec::cpu::CpuExecutor;
use camc_runtime::exec::cuda::{CudaExecutor, DeviceTensor};
use camc_runtime::exec::{Executor, Outputs};
use camc_runtime::program::Resolved;
use camc_runtime::run::scaled_shape;
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Scalar parameter values as bit patterns, sorted by name: a kernel's key.
type Knobs = Vec<(String, u32)>;

/// Executors kept per program; past this many (a caller cycling through sizes), the oldest
/// are dropped.
const MAX_EXECUTORS: usize = 16;

/// Which kernel of a program: its map (None), or its gradient with respect to an input.
type Variant = Option<String>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct ExecutorKey {
    knobs: Knobs,
    variant: Variant,
    dims: Dims,
    outputs: Outputs,
}

/// Executors in the order they were made (the first is dropped first).
struct Executors<E> {
    entries: Vec<(ExecutorKey, Arc<Mutex<E>>)>,
}

impl<E> Executors<E> {
    fn get_or_make(
        &mut self,
        key: ExecutorKey,
        make: impl FnOnce() -> Result<E, String>,
    ) -> Result<Arc<Mutex<E>>, String> {
        if let Some((_, e)) = self.entries.iter().find(|(k, _)| *k == key) {
            return Ok(e.clone());
        }
        let executor = Arc::new(Mutex::new(make()?));
        if self.entries.len() == MAX_EXECUTORS {
            self.entries.remove(0);
        }
        self.entries.push((key, executor.clone()));
        Ok(executor)
    }
}

impl<E> Default for Executors<E> {
    fn default() -> Self {
        Executors { entries: Vec::new() }
    }
}

/// A checked program and the `cam` it runs (camc/_program.py wraps it as `camc.Program`).
#[pyclass(frozen, module = "camc._camc")]
pub struct Program {
    resolved: Resolved,
    kernels: Mutex<HashMap<(Knobs, Variant), Kernel>>,
    cpu: Mutex<Executors<CpuExecutor>>,
    cuda: Mutex<Executors<CudaExecutor>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a call asks for, checked: the kernel, the sizes, the outputs and the map's shape.
struct Plan {
    key: ExecutorKey,
    kernel: Kernel,
    n: usize,
    /// One image's map.
    map_shape: Vec<usize>,
}

impl Program {
    pub fn new(resolved: Resolved) -> Program {
        Program {
            resolved,
            kernels: Mutex::default(),
            cpu: Mutex::default(),
            cuda: Mutex::default(),
        }
    }

    /// The kernel for these scalar values: the map's, or with `grad` the backward kernel of
    /// that input (its output: the gradient of `Σ @out_grad · map`, see camc_compiler::grad).
    fn kernel(
        &self,
        py: Python<'_>,
        knobs: &Bound<'_, PyDict>,
        grad: &Variant,
    ) -> PyResult<(Knobs, Variant, Kernel)> {
        let mut values = HashMap::new();
        for (name, value) in knobs.iter() {
            let name: String = name.extract()?;
            let value: f64 = value
                .extract()
                .map_err(|_| error(py, Kind::InputType, format!("`{name}` must be a number")))?;
            if !(value as f32).is_finite() {
                return Err(error(
                    py,
                    Kind::Input,
                    format!("`{name}` = {value}: the value must be finite"),
                ));
            }
            values.insert(name, value as f32);
        }
        let mut key: Knobs = values.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect();
        key.sort();
        let mut kernels = lock(&self.kernels);
        if let Some(kernel) = kernels.get(&(key.clone(), grad.clone())) {
            return Ok((key, grad.clone(), kernel.clone()));
        }
        let mut kernel =
            camc_compiler::compile_kernel(self.resolved.program(), self.resolved.root, &values, Level::Exact)
                .map_err(|e| error(py, Kind::Input, e.to_string()))?;
        if let Some(wrt) = grad {
            kernel = camc_compiler::grad::backward(&kernel, wrt)
                .map_err(|e| error(py, Kind::Input, format!("`{}`: {e}", self.resolved.name())))?;
            camc_compiler::opt::optimize(&mut kernel, Level::Exact)
                .map_err(|e| error(py, Kind::Input, e.to_string()))?;
        }
        kernels.insert((key.clone(), grad.clone()), kernel.clone());
        Ok((key, grad.clone(), kernel))
    }

    /// Checks the shapes (input `j`'s is `shapes[j]`) and the output size.
    fn plan(
        &self,
        py: Python<'_>,
        knobs: (Knobs, Variant, Kernel),
        shapes: &[Vec<usize>],
        size: Option<Vec<usize>>,
    ) -> PyResult<Plan> {
        let (knobs, variant, kernel) = knobs;
        let (n, dims) = sizes_of(&kernel, shapes).map_err(|m| error(py, Kind::Input, m))?;
        let raw_shape = Outputs::raw_shape(&kernel, dims);
        let outputs = match size {
            // A gradient keeps its non-finite values: a NaN must reach the caller.
            None if variant.is_some() => Outputs::untouched(),
            None => Outputs::raw(),
            Some(wanted) => {
                let shape = scaled_shape(&raw_shape, &wanted).ok_or_else(|| {
                    error(
                        py,
                        Kind::Input,
                        format!("size {wanted:?} does not fit the program's map of shape {raw_shape:?}"),
                    )
                })?;
                Outputs::processed(shape)
            }
        };
        outputs
            .check(&kernel, dims)
            .map_err(|e| error(py, Kind::Input, e.to_string()))?;
        let map_shape = outputs.processed.clone().unwrap_or(raw_shape);
        Ok(Plan {
            key: ExecutorKey {
                knobs,
                variant,
                dims,
                outputs,
            },
            kernel,
            n,
            map_shape,
        })
    }

    /// The kernel's inputs taken from `tensors` by name, in the kernel's order; a name that is
    /// no parameter is an error.
    fn take<T>(&self, py: Python<'_>, kernel: &Kernel, mut tensors: HashMap<String, T>) -> PyResult<Vec<T>> {
        let mut taken = Vec::with_capacity(kernel.inputs.len());
        for input in &kernel.inputs {
            let value = tensors.remove(&input.name).ok_or_else(|| {
                error(
                    py,
                    Kind::Input,
                    format!(
                        "missing tensor `{}`: the program reads `{}: {}`",
                        input.name, input.name, input.ty
                    ),
                )
            })?;
            taken.push(value);
        }
        // A declared parameter the optimized kernel does not read is ignored, as the CLI
        // ignores a cache's other tensors.
        let function = self.resolved.program().function(self.resolved.root);
        tensors.retain(|name, _| {
            name != camc_compiler::grad::OUT_GRAD && !function.params.iter().any(|p| &p.name == name)
        });
        if let Some(name) = tensors.keys().min() {
            let params: Vec<String> = self
                .params()
                .into_iter()
                .map(|(n, t)| format!("{n}: {t}"))
                .collect();
            return Err(error(
                py,
                Kind::Input,
                format!(
                    "`{name}` is not a tensor parameter of `{}({})`",
                    self.resolved.name(),
                    params.join(", ")
                ),
            ));
        }
        Ok(taken)
    }
}

#[pymethods]
impl Program {
    /// The `cam`'s parameters as `(name, type)`, e.g. `("A", "[k,h,w]")`.
    #[getter]
    fn params(&self) -> Vec<(String, String)> {
        self.resolved
            .program()
            .function(self.resolved.root)
            .params
            .iter()
            .map(|p| {
                let shared = if p.shared { "shared " } else { "" };
                (p.name.clone(), format!("{shared}{}", p.ty))
            })
            .collect()
    }

    /// The scalar parameters (set by keyword), with their defaults.
    #[getter]
    fn scalars(&self) -> Vec<(String, Option<f32>)> {
        let function = self.resolved.program().function(self.resolved.root);
        function
            .params
            .iter()
            .filter(|p| p.ty.is_empty())
            .map(|p| (p.name.clone(), p.default))
            .collect()
    }

    #[getter]
    fn name(&self) -> &str {
        self.resolved.name()
    }

    /// The shape of the result `[n, ...map]` for tensors of these shapes (by name).
    #[pyo3(signature = (shapes, size, knobs, grad = None))]
    fn result_shape(
        &self,
        py: Python<'_>,
        shapes: HashMap<String, Vec<usize>>,
        size: Option<Vec<usize>>,
        knobs: &Bound<'_, PyDict>,
        grad: Variant,
    ) -> PyResult<Vec<usize>> {
        let knobs = self.kernel(py, knobs, &grad)?;
        let shapes = self.take(py, &knobs.2, shapes)?;
        let plan = self.plan(py, knobs, &shapes, size)?;
        Ok([plan.n].into_iter().chain(plan.map_shape).collect())
    }

    /// Runs on host arrays (by name; `bf16` names arrays of bf16 bits): the maps `[n, ...]`
    /// (post-processed to `size` when given), and the count of non-finite values set to 0.
    #[pyo3(signature = (tensors, bf16, size, knobs, grad = None))]
    fn run_host<'py>(
        &self,
        py: Python<'py>,
        tensors: HashMap<String, Bound<'py, PyAny>>,
        bf16: Vec<String>,
        size: Option<Vec<usize>>,
        knobs: &Bound<'py, PyDict>,
        grad: Variant,
    ) -> PyResult<(Bound<'py, PyArrayDyn<f32>>, usize)> {
        let knobs = self.kernel(py, knobs, &grad)?;
        let kernel = knobs.2.clone();
        let given = self.take(py, &kernel, tensors)?;
        let mut hosts = Vec::with_capacity(given.len());
        for (value, input) in given.iter().zip(&kernel.inputs) {
            let host = Host::extract(value, bf16.contains(&input.name)).ok_or_else(|| {
                let kind = value.get_type().name().map(|n| n.to_string()).unwrap_or_default();
                let dtype = value
                    .getattr("dtype")
                    .map(|d| format!(" of dtype {d}"))
                    .unwrap_or_default();
                error(
                    py,
                    Kind::InputType,
                    format!(
                        "`{}` must be a float32, float16 or bfloat16 (or integer) array, got {kind}{dtype}",
                        input.name
                    ),
                )
            })?;
            hosts.push(host);
        }
        let shapes: Vec<Vec<usize>> = hosts.iter().map(Host::shape).collect();
        let plan = self.plan(py, knobs, &shapes, size)?;
        let data: Vec<Data<'_>> = hosts
            .iter()
            .zip(&kernel.inputs)
            .map(|(h, input)| {
                h.data()
                    .map_err(|m| error(py, Kind::Input, format!("`{}` {m}", input.name)))
            })
            .collect::<PyResult<_>>()?;
        let Plan {
            key,
            kernel,
            n,
            map_shape,
        } = plan;
        let map_len: usize = map_shape.iter().product();
        let mut out = vec![0.0f32; n * map_len];
        let mut counts = vec![0usize; n];
        let result = py.detach(|| -> Result<(), String> {
            let processed = key.outputs.processed.is_some();
            let (dims, outputs) = (key.dims, key.outputs.clone());
            let executor = lock(&self.cpu).get_or_make(key, || {
                CpuExecutor::new(&kernel, dims, outputs).map_err(|e| e.to_string())
            })?;
            let mut executor = lock(&executor);
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
        result.map_err(|m| error(py, Kind::Input, m))?;
        let shape: Vec<usize> = [n].into_iter().chain(map_shape).collect();
        let array = PyArray1::from_vec(py, out).reshape(shape)?;
        Ok((array, counts.iter().sum()))
    }

    /// Runs on tensors in GPU memory (by name: `(address, dtype, shape)`), writing the maps to
    /// `out` (f32, as many values as [`Program::result_shape`] says) on the CUDA `stream`
    /// (torch's current one): post-processed to `size` by the kernel, or raw maps as computed
    /// (non-finite values kept). Returns once the work is queued.
    #[pyo3(signature = (tensors, out, size, knobs, stream, grad = None))]
    #[allow(clippy::too_many_arguments)]
    fn run_device(
        &self,
        py: Python<'_>,
        tensors: HashMap<String, (u64, String, Vec<usize>)>,
        out: u64,
        size: Option<Vec<usize>>,
        knobs: &Bound<'_, PyDict>,
        stream: u64,
        grad: Variant,
    ) -> PyResult<()> {
        let knobs = self.kernel(py, knobs, &grad)?;
        let given = self.take(py, &knobs.2, tensors)?;
        let shapes: Vec<Vec<usize>> = given.iter().map(|(_, _, s)| s.clone()).collect();
        let mut plan = self.plan(py, knobs, &shapes, size)?;
        if plan.key.outputs.processed.is_none() {
            plan.key.outputs = Outputs::untouched();
        }
        let mut inputs = Vec::with_capacity(given.len());
        for ((ptr, dtype, shape), input) in given.iter().zip(&plan.kernel.inputs) {
            let dtype = dtype_named(dtype).ok_or_else(|| {
                error(
                    py,
                    Kind::InputType,
                    format!(
                        "`{}` has dtype {dtype}; camc reads float32, float16, bfloat16, int64 or int32",
                        input.name
                    ),
                )
            })?;
            inputs.push(DeviceTensor {
                ptr: *ptr,
                dtype,
                len: shape.iter().product(),
            });
        }
        let Plan {
            key,
            kernel,
            n,
            map_shape,
        } = plan;
        let out = DeviceTensor {
            ptr: out,
            dtype: camc_compiler::dtype::Dtype::F32,
            len: n * map_shape.iter().product::<usize>(),
        };
        py.detach(|| -> Result<(), String> {
            let (dims, outputs) = (key.dims, key.outputs.clone());
            let executor = lock(&self.cuda).get_or_make(key, || {
                CudaExecutor::new(&kernel, dims, outputs).map_err(|e| e.to_string())
            })?;
            let mut executor = lock(&executor);
            // SAFETY: the addresses and shapes are those of live torch CUDA tensors on GPU 0
            // (camc/_program.py checks the device), which the caller keeps until `stream` ran.
            unsafe { executor.run_on_device(n, &inputs, out, 0, stream) }.map_err(|e| e.to_string())
        })
        .map_err(|m| error(py, Kind::Device, m))
    }

    /// The compiled form as text: `"ir"`, `"clif"` (specialized to `dims` = (k, h, w) or
    /// (k, d, h, w), post-processing to `size` fused in when given), `"cuda"` or `"ptx"` (for
    /// `arch`).
    #[pyo3(signature = (target, dims = None, size = None, arch = "sm_75".to_string(), knobs = None))]
    fn emit(
        &self,
        py: Python<'_>,
        target: &str,
        dims: Option<Vec<usize>>,
        size: Option<[usize; 2]>,
        arch: String,
        knobs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<String> {
        let empty = PyDict::new(py);
        let (_, _, kernel) = self.kernel(py, knobs.unwrap_or(&empty), &None)?;
        let emit = match target {
            "ir" => Emit::Ir,
            "cuda" => Emit::Cuda,
            "ptx" => Emit::Ptx { arch },
            "clif" => {
                let dims = match dims.as_deref() {
                    None => Dims::new(2048, 1, 7, 7),
                    Some(&[k, h, w]) => Dims::new(k, 1, h, w),
                    Some(&[k, d, h, w]) => Dims::new(k, d, h, w),
                    Some(other) => {
                        return Err(error(
                            py,
                            Kind::Input,
                            format!("dims {other:?}: give (k, h, w) or (k, d, h, w)"),
                        ))
                    }
                };
                Emit::Clif { dims, size }
            }
            other => {
                return Err(error(
                    py,
                    Kind::Input,
                    format!("target `{other}`: emit \"ir\", \"clif\", \"cuda\" or \"ptx\""),
                ))
            }
        };
        camc_runtime::emit::text(&kernel, &emit).map_err(|e| {
            let kind = if matches!(emit, Emit::Ptx { .. }) {
                Kind::Device
            } else {
                Kind::Program
            };
            error(py, kind, e)
        })
    }
}

/// The executors are kept across calls and used from whichever thread calls.
const _: () = {
    const fn sendable<T: Send>() {}
    sendable::<CpuExecutor>();
    sendable::<CudaExecutor>();
};

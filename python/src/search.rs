//! `camc._camc.search`: `camc search` (docs/search.md) with the candidates' maps scored by a
//! Python callback, e.g. one that re-runs a PyTorch model for Average Drop, instead of the
//! cache metrics. The search runs on the CPU JIT with the GIL released; the callback takes the
//! GIL back for each batch of maps. It writes the same rank files, `report.json` and
//! checkpoint as the command line, and returns the summary the command line prints.

use crate::{error, Kind};
use camc_analysis::evaluate::MetricData;
use camc_analysis::metrics::Better;
use camc_analysis::search::checkpoint::Start;
use camc_analysis::search::driver::{Scored, Search};
use camc_analysis::search::results::{stdlib_baselines, summary, write_results};
use camc_analysis::search::scorer::MapScorer;
use camc_analysis::search::space::SpaceFile;
use camc_compiler::dims::Dims;
use camc_compiler::ir::Kernel;
use camc_runtime::cache::Cache;
use camc_runtime::exec::cpu::CpuExecutor;
use camc_runtime::exec::{Executor, Outputs, MAX_MAP_VALUES};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Mutex;

/// The first exception a Python callback raised: the search stops at the next batch and
/// `search` raises it (the same exception object, so `KeyboardInterrupt` stays one).
type Raised = Mutex<Option<PyErr>>;

fn keep_first(raised: &Raised, e: PyErr) {
    let mut slot = raised.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    slot.get_or_insert(e);
}

fn has_raised(raised: &Raised) -> bool {
    raised
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .is_some()
}

/// The user's scorer: `scorer(first, maps)` with `maps` a `[count, H, W]` float32 array.
struct PythonScorer<'a> {
    callback: &'a Py<PyAny>,
    size: (usize, usize),
    raised: &'a Raised,
}

impl MapScorer for PythonScorer<'_> {
    fn score(&self, first: usize, maps: &[f32]) -> Result<Vec<Option<f64>>, String> {
        if has_raised(self.raised) {
            return Err("stopped: a Python callback raised an exception".into());
        }
        // The search calls this on the thread that released the GIL (see
        // `camc_analysis::search::scorer`); `attach` takes it back.
        Python::attach(|py| {
            self.call(py, first, maps).map_err(|e| {
                let message = e.to_string();
                keep_first(self.raised, e);
                message
            })
        })
    }
}

impl PythonScorer<'_> {
    fn call(&self, py: Python<'_>, first: usize, maps: &[f32]) -> PyResult<Vec<Option<f64>>> {
        // A Ctrl-C while the GIL was released is raised here, as from any Python code.
        py.check_signals()?;
        let (h, w) = self.size;
        let count = maps.len() / (h * w).max(1);
        let array = PyArray1::from_slice(py, maps).reshape([count, h, w])?;
        let returned = self.callback.bind(py).call1((first, array))?;
        values_of(py, &returned, first, count)
    }
}

/// A value as a message shows it: its (shortened) repr and type.
fn shown(value: &Bound<'_, PyAny>) -> String {
    let mut text = value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "an object".into());
    if text.chars().count() > 80 {
        text = text.chars().take(77).collect::<String>() + "...";
    }
    match value.get_type().name() {
        Ok(name) => format!("{text} (of type {name})"),
        Err(_) => text,
    }
}

/// The scorer's result for images `first..first + count`: one float or None per image.
fn values_of(
    py: Python<'_>,
    returned: &Bound<'_, PyAny>,
    first: usize,
    count: usize,
) -> PyResult<Vec<Option<f64>>> {
    let expected = "a sequence of float or None, one per image";
    let not_a_sequence = || {
        error(
            py,
            Kind::InputType,
            format!("the scorer returned {}; expected {expected}", shown(returned)),
        )
    };
    if returned.is_instance_of::<pyo3::types::PyString>() {
        return Err(not_a_sequence());
    }
    let items = returned.try_iter().map_err(|_| not_a_sequence())?;
    let mut values = Vec::with_capacity(count);
    for item in items {
        let item = item?;
        if item.is_none() {
            values.push(None);
            continue;
        }
        let value: f64 = item.extract().map_err(|_| {
            error(
                py,
                Kind::InputType,
                format!(
                    "the scorer returned {} for image {}; expected a float or None",
                    shown(&item),
                    first + values.len()
                ),
            )
        })?;
        values.push(Some(value));
    }
    if values.len() != count {
        return Err(error(
            py,
            Kind::Input,
            format!(
                "the scorer returned {} values for the {count} maps of images {first}..{}: {}; expected {expected}",
                values.len(),
                first + count,
                shown(returned)
            ),
        ));
    }
    Ok(values)
}

/// `progress(done, total, best_weights_or_None)`; its exception stops the search too.
fn report_progress(
    callback: Option<&Py<PyAny>>,
    raised: &Raised,
    done: usize,
    total: usize,
    best: Option<&Scored>,
) {
    let Some(callback) = callback else {
        return;
    };
    if has_raised(raised) {
        return;
    }
    Python::attach(|py| {
        let best = best.map(|b| b.weights.as_str());
        if let Err(e) = py
            .check_signals()
            .and_then(|()| callback.bind(py).call1((done, total, best)).map(drop))
        {
            keep_first(raised, e);
        }
    });
}

fn cpu_executor(kernel: &Kernel, dims: Dims, outputs: Outputs) -> Result<Box<dyn Executor>, String> {
    CpuExecutor::new(kernel, dims, outputs)
        .map(|e| Box::new(e) as Box<dyn Executor>)
        .map_err(|e| e.to_string())
}

/// A search's arguments, checked.
struct Request {
    cache: String,
    out: PathBuf,
    metric: String,
    better: Better,
    size: (usize, usize),
    budget: usize,
    holdout: f64,
    seed: u64,
    start: Start,
    keep: usize,
    space: Option<PathBuf>,
    max_size: Option<usize>,
    batch: usize,
}

impl Request {
    fn space(&self) -> Result<camc_analysis::search::space::Space, String> {
        let mut file = match &self.space {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
                SpaceFile::parse(&text).map_err(|e| format!("`{}`: {e}", path.display()))?
            }
            None => SpaceFile::default(),
        };
        if let Some(max) = self.max_size {
            file.max_size = max;
        }
        file.resolve()
    }

    /// Runs the search (without the GIL) and writes its results; the summary text.
    fn run(
        &self,
        scorer: &Py<PyAny>,
        progress: Option<&Py<PyAny>>,
        raised: &Raised,
    ) -> Result<String, String> {
        let space = self.space()?;
        let cache = Cache::open(&self.cache).map_err(|e| e.to_string())?;
        if cache.dims().map_err(|e| e.to_string())?.d != 1 {
            return Err(format!(
                "cache `{}` holds 3-D activations [n,k,d,h,w]; the search makes 2-D maps only",
                cache.spec
            ));
        }
        let (h, w) = self.size;
        // No metrics: only what the report and boxes need; the maps' size is all the search reads.
        let data = MetricData::load(&cache, &[], vec![h, w], false).map_err(|e| e.to_string())?;
        let python_scorer = PythonScorer {
            callback: scorer,
            size: self.size,
            raised,
        };
        let search = Search {
            cache: &cache,
            space,
            objective: Vec::new(),
            metric: self.metric.clone(),
            better: self.better,
            budget: self.budget,
            holdout: self.holdout,
            seed: self.seed,
            out: self.out.clone(),
            batch: self.batch,
            reference: None,
            data: &data,
            scorer: Some(&python_scorer),
            batched: true,
            keep: self.keep,
            pareto: vec![],
        };
        let outcome = search.run(&cpu_executor, self.start, |done, total, best| {
            report_progress(progress, raised, done, total, best)
        })?;
        let baselines = stdlib_baselines(&search, &cpu_executor)?;
        write_results(&search, &outcome, &baselines, self.keep)?;
        Ok(summary(&search, &outcome, &baselines))
    }
}

/// Searches programs `relu(sum[k](WEIGHTS * A))` on `cache`, scoring each candidate's maps
/// (post-processed to `size`) with `scorer(first, maps) -> [float | None]`; writes
/// `out/rank-NN.cam`, `out/report.json` and `out/checkpoint.jsonl` as `camc search` does and
/// returns its summary. `metric` names what the scorer computes (the checkpoint is resumed
/// only under the same name); `better` is `"higher"` or `"lower"`.
#[pyfunction]
#[pyo3(signature = (cache, out, metric, better, scorer, size, budget=200, holdout=0.3, seed=0, resume=false, force=false, keep=5, space=None, max_size=None, batch=32, progress=None))]
// One argument per keyword argument of the Python function.
#[allow(clippy::too_many_arguments)]
pub fn search(
    py: Python<'_>,
    cache: String,
    out: PathBuf,
    metric: String,
    better: &str,
    scorer: Py<PyAny>,
    size: (usize, usize),
    budget: usize,
    holdout: f64,
    seed: u64,
    resume: bool,
    force: bool,
    keep: usize,
    space: Option<PathBuf>,
    max_size: Option<usize>,
    batch: usize,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let input = |message: &str| error(py, Kind::Input, message);
    let better = match better {
        "higher" => Better::Higher,
        "lower" => Better::Lower,
        other => {
            return Err(input(&format!(
                "better is `{other}`; expected \"higher\" or \"lower\""
            )))
        }
    };
    if metric.trim().is_empty() {
        return Err(input("metric must name what the scorer computes"));
    }
    if !(0.0..1.0).contains(&holdout) {
        return Err(input("holdout must be in [0, 1)"));
    }
    if size.0 == 0 || size.1 == 0 || size.0.saturating_mul(size.1) > MAX_MAP_VALUES {
        return Err(input(&format!(
            "size {size:?}: each side must be at least 1, and a map at most {MAX_MAP_VALUES} values"
        )));
    }
    if batch == 0 {
        return Err(input("batch must be at least 1"));
    }
    let start = match (resume, force) {
        (true, true) => return Err(input("resume and force exclude each other")),
        (true, false) => Start::Resume,
        (false, true) => Start::Force,
        (false, false) => Start::Fresh,
    };
    for (name, callback) in [("scorer", Some(&scorer)), ("progress", progress.as_ref())] {
        if callback.is_some_and(|c| !c.bind(py).is_callable()) {
            return Err(error(py, Kind::InputType, format!("{name} must be callable")));
        }
    }
    let request = Request {
        cache,
        out,
        metric,
        better,
        size,
        budget,
        holdout,
        seed,
        start,
        keep,
        space,
        max_size,
        batch,
    };
    let raised = Raised::default();
    let result = py.detach(|| request.run(&scorer, progress.as_ref(), &raised));
    // The callback's own exception, rather than the message the search stopped with.
    if let Some(e) = raised
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
    {
        return Err(e);
    }
    result.map_err(|message| error(py, Kind::Input, message))
}

//! `camc eval PROGRAM... --cache C --metric M[,M...]`: a table with one row per program and a
//! column per metric (with its direction), `--json FILE` rows, `--png DIR` overlays and a
//! `--report DIR` HTML page.

use super::backend::{self, Backend};
use super::program::Fail;
use super::{outputs, overlays, program, report_page, sizes};
use crate::output;
use crate::progress;
use crate::Reported;
use camc_analysis::evaluate::{values, Evaluation, MetricData};
use camc_analysis::metrics::{metrics_by_names, MetricError, MetricValue};
use camc_analysis::overlay::OverlayStyle;
use camc_analysis::report::{write_report, GridRow, MetricRow, Report};
use camc_compiler::opt::Level;
use camc_runtime::cache::{Binding, Cache};
use camc_runtime::exec::Outputs;
use camc_runtime::run::Run;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Programs: `file.cam`, `file.cam:name` or stdlib method names.
    #[arg(required_unless_present = "stdlib")]
    programs: Vec<String>,
    /// Also every stdlib method whose inputs the cache has (the others are listed as skipped).
    #[arg(long)]
    stdlib: bool,
    #[arg(long)]
    cache: String,
    /// Metrics, comma-separated: loc iou pointing energy ad_feat ic_feat ag_feat robust complexity.
    #[arg(long)]
    metric: String,
    /// Write the rows as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The same images with perturbed inputs (for `robust`).
    #[arg(long)]
    perturbed: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// Images per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
    /// Overlay PNGs, one folder per program.
    #[arg(long)]
    png: Option<PathBuf>,
    /// An HTML page with the metric table and a grid of overlays (the first --report-images images).
    #[arg(long)]
    report: Option<PathBuf>,
    #[arg(long, default_value_t = 12)]
    report_images: usize,
}

fn fail(message: impl std::fmt::Display) -> Reported {
    output::error(&message.to_string());
    Reported
}

/// A metric that cannot be computed from a cache: asking a cache for an image-level metric
/// (`ad`, which re-runs the model) is a usage error (exit 2); other metric errors exit 1.
pub(super) fn metric_failure(error: MetricError) -> Reported {
    match error {
        MetricError::NeedsModel { .. } => crate::usage_error(&error.to_string()),
        other => fail(other),
    }
}

struct Row {
    program: String,
    values: Vec<MetricValue>,
    images: usize,
}

pub fn run(args: Args) -> Result<(), Reported> {
    let probe = metrics_by_names(&args.metric).map_err(metric_failure)?;
    let cache = Cache::open(&args.cache).map_err(fail)?;
    let perturbed_cache = match &args.perturbed {
        Some(spec) => Some(Cache::open(spec).map_err(fail)?),
        None => None,
    };
    let size = sizes::for_metrics(&cache)?;
    let mut programs = args.programs.clone();
    let mut skipped = Vec::new();
    if args.stdlib {
        let caches: Vec<&Cache> = std::iter::once(&cache).chain(&perturbed_cache).collect();
        let (runnable, not) = runnable_stdlib(&caches);
        programs.extend(runnable);
        skipped = not;
    }
    // Every program is checked against the cache before anything is computed or written.
    let mut compiled = Vec::new();
    for spec in &programs {
        let resolved = program::resolve(spec)?;
        let kernel = program::compile(&resolved, &HashMap::new(), Level::Exact)?;
        let dims = Binding::new(&cache, &kernel)
            .map_err(|e| resolved.fail(&e, e.span(), "the parameter bound to this tensor"))?
            .dims;
        let raw = Outputs::raw_shape(&kernel, dims);
        sizes::check_metric_map(&cache, spec, kernel.output_ty(), &raw, &size)?;
        compiled.push((spec, resolved, kernel));
    }
    let caches: Vec<&Cache> = std::iter::once(&cache).chain(&perturbed_cache).collect();
    let resolved: Vec<&program::Resolved> = compiled.iter().map(|(_, r, _)| r).collect();
    let inputs = outputs::inputs(&caches, &resolved, &[]);
    outputs::check(
        &inputs,
        [args.json.as_deref(), args.png.as_deref(), args.report.as_deref()],
    )?;
    let data = MetricData::load(&cache, &probe, size.clone(), perturbed_cache.is_some()).map_err(fail)?;
    let png_root = outputs::dir(args.png.as_deref())?;
    let report_root = outputs::dir(args.report.as_deref())?;
    let mut rows = Vec::new();
    let mut grid: Vec<GridRow> = match &report_root {
        Some(root) => report_page::grid(
            root.path(),
            &data,
            args.report_images.min(cache.images().map_err(fail)?),
        )?,
        None => Vec::new(),
    };
    for (spec, resolved, kernel) in &compiled {
        let binding = Binding::new(&cache, kernel)
            .map_err(|e| resolved.fail(&e, e.span(), "the parameter bound to this tensor"))?;
        let perturbed_maps = match &perturbed_cache {
            Some(other) => Some(maps_of(other, kernel, args.backend, &size, args.batch as usize)?),
            None => None,
        };
        let evaluation = Evaluation {
            kernel,
            binding: &binding,
            cache: &cache,
            data: &data,
            batch: args.batch as usize,
            perturbed: perturbed_maps.as_deref(),
        };
        let mut groups = vec![metrics_by_names(&args.metric).map_err(metric_failure)?];
        let outputs = evaluation.outputs(&groups);
        let mut executor = backend::executor(args.backend, kernel, binding.dims, outputs)?;
        let name = kernel.name.clone();
        let png_dir = png_root.as_ref().map(|d| d.path().join(&name));
        let report_dir = report_root.as_ref().map(|d| d.path().join(&name));
        for dir in png_dir.iter().chain(&report_dir) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot create `{}`: {e}", dir.display())))?;
        }
        let mut cells = vec![None; grid.len()];
        let mut hovers = vec![String::new(); grid.len()];
        let metric_units: Vec<(&'static str, f64)> = groups[0].iter().map(|m| (m.name(), m.unit())).collect();
        let bar = progress::bar(binding.images as u64, &format!("images ({name})"));
        let stats = evaluation
            .score(
                executor.as_mut(),
                &mut groups,
                &|_| Some(0),
                |image, map, scores| {
                    if let Some(dir) = &png_dir {
                        overlays::write(dir, image, map, &data)?;
                    }
                    if let (Some(dir), Some(cell)) = (&report_dir, cells.get_mut(image)) {
                        let path = overlays::write(dir, image, map, &data)?;
                        let file = path
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        *cell = Some(format!("{name}/{file}"));
                        hovers[image] = report_page::hover(&metric_units, scores);
                    }
                    Ok(())
                },
                |n| bar.inc(n as u64),
            )
            .map_err(|e| resolved.fail(&e, e.span(), "the parameter bound to this tensor"))?;
        bar.finish_and_clear();
        if stats.nonfinite_values > 0 {
            eprint!("{spec}: ");
        }
        output::warn_nonfinite(&stats);
        for ((row, cell), hover) in grid.iter_mut().zip(cells).zip(hovers) {
            row.cells.push(cell);
            row.hovers.push(hover);
        }
        rows.push(Row {
            program: spec.to_string(),
            values: values(&groups[0]),
            images: binding.images,
        });
    }
    print_table(&rows);
    if let Some(path) = &args.json {
        write_json(path, &rows)?;
    }
    outputs::commit(png_root)?;
    if let Some(root) = report_root {
        let images = rows.first().map_or(0, |r| r.images).min(grid.len());
        grid.truncate(images);
        let report = Report {
            title: format!("camc eval — {}", args.cache),
            provenance: report_page::provenance(&cache),
            skipped: skipped.clone(),
            colormap: Some(OverlayStyle::default().colormap),
            methods: rows.iter().map(|r| r.program.clone()).collect(),
            grid,
            metrics: rows
                .iter()
                .map(|r| MetricRow {
                    program: r.program.clone(),
                    values: r.values.clone(),
                })
                .collect(),
        };
        let page = write_report(root.path(), &report).map_err(fail)?;
        let page = root.final_path(&page);
        outputs::commit(Some(root))?;
        eprintln!("report: {}", page.display());
    }
    Ok(())
}

/// The stdlib methods whose inputs every one of `caches` has (the clean cache and, for
/// `robust`, the perturbed one), and those it skips with why (also said on stderr).
fn runnable_stdlib(caches: &[&Cache]) -> (Vec<String>, Vec<(String, String)>) {
    let mut runnable = Vec::new();
    let mut skipped = Vec::new();
    for (method, kernel) in camc_runtime::program::stdlib_kernels() {
        match caches
            .iter()
            .try_for_each(|cache| Binding::new(cache, &kernel).map(drop))
        {
            Ok(()) => runnable.push(method.to_string()),
            Err(e) => {
                let why = match e.missing_tensor() {
                    Some((path, tensor)) => format!(
                        "cache `{}` has no `{tensor}` ({})",
                        path.display(),
                        exporter_hint(tensor)
                    ),
                    None => e.to_string(),
                };
                eprintln!("skipping {method}: {why}");
                skipped.push((method.to_string(), why));
            }
        }
    }
    (runnable, skipped)
}

/// How to get a tensor from the PyTorch exporter, `python -m camc.export` (docs/exporter.md).
fn exporter_hint(tensor: &str) -> String {
    let how = match tensor {
        "score" => "python -m camc.export ... --score writes it",
        "ablation" => "python -m camc.export ... --ablation writes it",
        "recipro" => "python -m camc.export ... --recipro writes it",
        "H" => "python -m camc.export ... --hvp writes it",
        "W" | "head.weight" | "head.bias" => {
            "python -m camc.export writes it unless --no-head; name the linear head with --head when it is not detected"
        }
        "image" => "python -m camc.export writes it unless --no-image",
        "boxes" => "python -m camc.export ... --boxes FILE.json writes it",
        "A" | "G" | "target" | "logit" | "logits" => "python -m camc.export always writes it",
        _ => return format!("python -m camc.export ... --extra {tensor}=FILE adds it"),
    };
    how.to_string()
}

/// Every post-processed map of a cache, image-major (`robust`'s perturbed cache, `search`'s
/// reference program).
pub(super) fn maps_of(
    cache: &Cache,
    kernel: &camc_compiler::ir::Kernel,
    backend: Backend,
    size: &[usize],
    batch: usize,
) -> Result<Vec<f32>, Reported> {
    let binding = Binding::new(cache, kernel).map_err(fail)?;
    let outputs = Outputs::processed(size.to_vec());
    let mut executor = backend::executor(backend, kernel, binding.dims, outputs)?;
    let job = Run {
        binding: &binding,
        batch,
        strict: false,
    };
    let map_len: usize = size.iter().product();
    let mut maps = vec![0.0; binding.images * map_len];
    job.execute_in_order(
        executor.as_mut(),
        |first, _, processed| {
            maps[first * map_len..][..processed.len()].copy_from_slice(processed);
            Ok(())
        },
        |_| {},
    )
    .map_err(fail)?;
    Ok(maps)
}

fn format_value(v: &MetricValue) -> String {
    v.value.map_or("n/a".into(), |x| format!("{x:.4}"))
}

fn print_table(rows: &[Row]) {
    let Some(first) = rows.first() else { return };
    let width = rows.iter().map(|r| r.program.len()).max().unwrap_or(7).max(7);
    let mut header = format!("{:<width$}", "program");
    for v in &first.values {
        let arrow = if v.better.as_str() == "higher" {
            "↑"
        } else {
            "↓"
        };
        header.push_str(&format!(" {:>12}", format!("{}{arrow}", v.name)));
    }
    println!("{header}");
    for row in rows {
        let mut line = format!("{:<width$}", row.program);
        for v in &row.values {
            line.push_str(&format!(" {:>12}", format_value(v)));
        }
        println!("{line}");
    }
}

fn write_json(path: &std::path::Path, rows: &[Row]) -> Result<(), Reported> {
    let list: Vec<serde_json::Value> = rows
        .iter()
        .flat_map(|r| {
            r.values.iter().map(|v| {
                serde_json::json!({
                    "program": r.program,
                    "metric": v.name,
                    "value": v.value,
                    "better": v.better.as_str(),
                    "images": v.images,
                    "skipped": v.skipped,
                })
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&list).map_err(fail)?;
    camc_runtime::output::write_file(path, (text + "\n").as_bytes()).map_err(fail)
}

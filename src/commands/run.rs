//! `camc run PROGRAM --cache C -o OUT`: runs a program over every image of a cache and writes
//! the heatmaps (tensor `heatmap` `[n,H,W]` f32) to `.npy` or `.safetensors`.

use super::backend::{self, Backend};
use super::program::Fail;
use super::{outputs, overlays, program, sizes};
use crate::output;
use crate::progress;
use crate::Reported;
use camc_analysis::evaluate::MetricData;
use camc_compiler::opt::Level;
use camc_runtime::cache::{parse_size, Binding, Cache};
use camc_runtime::exec::{Maps, Outputs};
use camc_runtime::heatmap_file::{Format, HeatmapWriter};
use camc_runtime::run::{Run, RunError};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// `file.cam`, `file.cam:name`, or a stdlib method name.
    program: String,
    /// A .safetensors file, a directory of .npy files, or a quoted glob of shards.
    #[arg(long)]
    cache: String,
    /// Output file: .npy or .safetensors.
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    backend: Backend,
    /// Output size `H,W` (default: the cache's image_size, else the feature size).
    #[arg(long, value_parser = size_arg)]
    size: Option<Size>,
    /// The program's result untouched, at feature resolution (no min-max, no resize).
    #[arg(long, conflicts_with = "size")]
    raw: bool,
    /// Set a scalar parameter: `--set eps=1e-5` (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = program::parse_knob)]
    knobs: Vec<(String, f32)>,
    /// Images per batch (default: about 64 MiB of inputs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batch: Option<u64>,
    /// Fail on non-finite results instead of setting them to 0.
    #[arg(long)]
    strict: bool,
    /// Write one overlay PNG per image into this folder.
    #[arg(long)]
    png: Option<PathBuf>,
    /// Allow reassociating optimizations (results may differ where values are not finite).
    #[arg(long)]
    fast_math: bool,
}

/// `H,W` (or `D,H,W` for 3-D results).
#[derive(Clone, Debug)]
struct Size(Vec<usize>);

fn size_arg(text: &str) -> Result<Size, String> {
    parse_size(text)
        .map(Size)
        .ok_or_else(|| format!("`{text}` is not a size like 224,224"))
}

fn fail(message: impl std::fmt::Display) -> Reported {
    output::error(&message.to_string());
    Reported
}

pub fn run(args: Args) -> Result<(), Reported> {
    let started = std::time::Instant::now();
    if Format::of(&args.output).is_none() {
        return Err(fail(format!(
            "output `{}` must end in .npy or .safetensors",
            args.output.display()
        )));
    }
    let resolved = program::resolve(&args.program)?;
    let knobs: HashMap<String, f32> = args.knobs.iter().cloned().collect();
    let level = if args.fast_math { Level::Fast } else { Level::Exact };
    let kernel = program::compile(&resolved, &knobs, level)?;
    let cache = Cache::open(&args.cache).map_err(fail)?;
    let inputs = outputs::inputs(&[&cache], &[&resolved], &[]);
    outputs::check(&inputs, [Some(args.output.as_path()), args.png.as_deref()])?;
    let binding = Binding::new(&cache, &kernel)
        .map_err(|e| resolved.fail(&e, e.span(), "the parameter bound to this tensor"))?;
    let raw = Outputs::raw_shape(&kernel, binding.dims);
    let outputs = if args.raw {
        Outputs::raw()
    } else {
        let requested = args.size.as_ref().map(|s| s.0.as_slice());
        Outputs::processed(sizes::processed(&cache, &raw, requested)?)
    };
    let map_shape = outputs.processed.clone().unwrap_or_else(|| raw.clone());
    let mut shape = vec![binding.images];
    shape.extend(&map_shape);
    let metadata = [("program", kernel.name.clone()), ("cache", args.cache.clone())];
    let writer = HeatmapWriter::create(&args.output, &shape, &metadata).map_err(fail)?;
    let overlay_data = match (&args.png, &outputs.processed) {
        (Some(_), Some(size)) if size.len() == 2 => {
            Some(MetricData::load(&cache, &[], size.clone(), false).map_err(fail)?)
        }
        (Some(_), _) => return Err(fail("--png needs a 2-D post-processed map (not --raw, not 3-D)")),
        (None, _) => None,
    };
    let mut executor = backend::executor(args.backend, &kernel, binding.dims, outputs)?;
    let png_dir = outputs::dir(args.png.as_deref())?;
    let bytes_per_image: usize = kernel.inputs.iter().map(|i| binding.dims.len(i.ty) * 4).sum();
    let batch = args
        .batch
        .map(|b| b as usize)
        .unwrap_or_else(|| ((64 << 20) / bytes_per_image.max(1)).clamp(1, 4096));
    let job = Run {
        binding: &binding,
        batch,
        strict: args.strict,
    };
    let map_len: usize = map_shape.iter().product();
    let bar = progress::bar(binding.images as u64, "images");
    let write = |image: usize, maps: Maps<'_>| -> Result<(), String> {
        let map = if args.raw { maps.raw } else { maps.processed };
        writer.write_at(image * map_len, map).map_err(|e| e.to_string())?;
        if let (Some(dir), Some(data)) = (&png_dir, &overlay_data) {
            overlays::write(dir.path(), image, map, data)?;
        }
        Ok(())
    };
    let result_span = kernel.node(kernel.output).span;
    let stats = job
        .execute(executor.as_mut(), &write, |n| bar.inc(n as u64))
        .map_err(|e| {
            // A non-finite result is about what the program computes: shown at its result.
            match e {
                RunError::NonFinite { .. } => resolved.fail(&e, Some(result_span), "this result"),
                _ => resolved.fail(&e, e.span(), "the parameter bound to this tensor"),
            }
        })?;
    bar.finish_and_clear();
    writer.finish().map_err(fail)?;
    outputs::commit(png_dir)?;
    output::warn_nonfinite(&stats);
    let seconds = started.elapsed().as_secs_f64();
    let nonfinite = match stats.nonfinite_values {
        0 => "no non-finite values".to_string(),
        n => format!("{} non-finite values set to 0", output::grouped(n as u64)),
    };
    eprintln!(
        "camc run: wrote {} maps {shape:?} to {} in {seconds:.2} s ({} maps/s); {nonfinite}",
        output::grouped(binding.images as u64),
        args.output.display(),
        output::rate(binding.images as f64 / seconds.max(1e-9)),
    );
    Ok(())
}

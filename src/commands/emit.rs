//! `camc emit PROGRAM --target ir|clif|cuda|ptx [--grad [WRT,...]] [-o FILE]`: the compiled form
//! of a program, or of its backward kernels.

use super::{outputs, program};
use crate::output;
use crate::Reported;
use camc_compiler::ir::Kernel;
use camc_compiler::opt::Level;
use camc_runtime::emit::Emit;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Copy, Clone, clap::ValueEnum)]
pub enum Target {
    /// The optimized IR, as text.
    Ir,
    /// Cranelift IR of the CPU kernel.
    Clif,
    /// Standalone CUDA C source.
    Cuda,
    /// PTX assembled by NVRTC.
    Ptx,
}

#[derive(clap::Args)]
pub struct Args {
    /// `file.cam`, `file.cam:name`, or a stdlib method name.
    program: String,
    #[arg(long, value_enum)]
    target: Target,
    /// Write here instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Show the IR as lowered, before the optimizer.
    #[arg(long, conflicts_with = "fast_math")]
    no_opt: bool,
    /// Also apply optimizations that reassociate (may change results that are not finite).
    #[arg(long)]
    fast_math: bool,
    /// GPU architecture of `--target ptx` (NVRTC's `--gpu-architecture`).
    #[arg(long, default_value = "sm_75")]
    arch: String,
    /// Sizes the CPU kernel is specialized to (`--target clif`): `K,H,W` or `K,D,H,W`.
    /// The default is a ResNet-50 last layer.
    #[arg(long, default_value = "2048,7,7", value_parser = parse_dims)]
    dims: [usize; 4],
    /// Classes of the head (`c`) the CPU kernel is specialized to, for programs over the class
    /// axis (`--target clif`).
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// With `--target clif`: fuse the post-processing to this output size `H,W` (min-max,
    /// bilinear resize, min-max) into the function, as `camc run` compiles it.
    #[arg(long, value_parser = parse_size, conflicts_with = "grad")]
    size: Option<[usize; 2]>,
    /// The backward kernels instead: for each input named (all tensor inputs but `target` when
    /// none is), the gradient of `Σ @out_grad · map` with respect to it (docs/ir.md, Gradients).
    #[arg(long, num_args = 0..=1, value_delimiter = ',', default_missing_value = "", value_name = "WRT,...")]
    grad: Option<Vec<String>>,
}

/// `H,W`, as `camc run --size` reads it.
fn parse_size(text: &str) -> Result<[usize; 2], String> {
    camc_runtime::cache::parse_size(text)
        .and_then(|size| <[usize; 2]>::try_from(size).ok())
        .ok_or_else(|| format!("`{text}` is not a size like 224,224"))
}

/// `K,H,W` or `K,D,H,W`, each at least 1.
fn parse_dims(text: &str) -> Result<[usize; 4], String> {
    let numbers: Vec<usize> = text
        .split(',')
        .map(|part| part.trim().parse::<usize>().map_err(|e| format!("`{part}`: {e}")))
        .collect::<Result<_, _>>()?;
    let dims = match numbers[..] {
        [k, h, w] => [k, 1, h, w],
        [k, d, h, w] => [k, d, h, w],
        _ => return Err("expected K,H,W or K,D,H,W".into()),
    };
    if dims.contains(&0) {
        return Err("every size must be at least 1".into());
    }
    Ok(dims)
}

pub fn run(args: Args) -> Result<(), Reported> {
    let resolved = program::resolve(&args.program)?;
    outputs::check(&outputs::inputs(&[], &[&resolved], &[]), [args.output.as_deref()])?;
    let level = match (args.no_opt, args.fast_math) {
        (true, _) => Level::None,
        (_, true) => Level::Fast,
        _ => Level::Exact,
    };
    let forward = program::compile(&resolved, &HashMap::new(), level)?;
    let kernels = match &args.grad {
        None => vec![forward],
        Some(names) => gradients(&forward, names, level)?,
    };
    let [k, d, h, w] = args.dims;
    let kernel = &kernels[0];
    let emit = match args.target {
        Target::Ir => Emit::Ir,
        Target::Clif => Emit::Clif {
            dims: camc_compiler::dims::Dims::new(k, d, h, w).with_classes(
                if kernel
                    .inputs
                    .iter()
                    .any(|i| i.ty.contains(camc_compiler::axes::Axis::C))
                {
                    args.classes.max(1)
                } else {
                    1
                },
            ),
            size: args.size,
        },
        Target::Cuda => Emit::Cuda,
        Target::Ptx => Emit::Ptx { arch: args.arch },
    };
    let texts = kernels
        .iter()
        .map(|kernel| camc_runtime::emit::text(kernel, &emit))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            output::error(&e);
            Reported
        })?;
    let text = texts.join("\n");
    match args.output {
        Some(path) => camc_runtime::output::write_file(&path, text.as_bytes()).map_err(|e| {
            output::error(&e.to_string());
            Reported
        }),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// The optimized backward kernel of `forward` for each name in `names` (every tensor input but
/// `target` when `names` is empty or holds one empty name).
fn gradients(forward: &Kernel, names: &[String], level: Level) -> Result<Vec<Kernel>, Reported> {
    let names: Vec<String> = match names {
        [] => Vec::new(),
        [only] if only.is_empty() => Vec::new(),
        _ => names.to_vec(),
    };
    let names = if names.is_empty() {
        forward
            .inputs
            .iter()
            .filter(|i| i.name != "target")
            .map(|i| i.name.clone())
            .collect()
    } else {
        names
    };
    names
        .iter()
        .map(|name| {
            let mut kernel = camc_compiler::grad::backward(forward, name).map_err(|e| {
                output::error(&format!("`{}`: {e}", forward.name));
                Reported
            })?;
            camc_compiler::opt::optimize(&mut kernel, level).map_err(|e| {
                output::error(&e.to_string());
                Reported
            })?;
            Ok(kernel)
        })
        .collect()
}

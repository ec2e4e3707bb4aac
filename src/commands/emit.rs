//! `camc emit PROGRAM --target ir|clif|cuda|ptx [-o FILE]`: the compiled form of a program.

use super::program;
use crate::output;
use crate::Reported;
use camc_compiler::opt::Level;
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
}

pub fn run(args: Args) -> Result<(), Reported> {
    let resolved = program::resolve(&args.program)?;
    let level = match (args.no_opt, args.fast_math) {
        (true, _) => Level::None,
        (_, true) => Level::Fast,
        _ => Level::Exact,
    };
    let kernel = program::compile(&resolved, &HashMap::new(), level)?;
    let text = match args.target {
        Target::Ir => camc_compiler::ir::print(&kernel),
        Target::Clif | Target::Cuda | Target::Ptx => {
            output::error(
                "only `--target ir` is available so far: the Cranelift and CUDA backends are not built yet",
            );
            return Err(Reported);
        }
    };
    match args.output {
        Some(path) => std::fs::write(&path, text).map_err(|e| {
            output::error(&format!("cannot write `{}`: {e}", path.display()));
            Reported
        }),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

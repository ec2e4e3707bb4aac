//! `camc`: the command line (docs/cli.md). Exit status: 0 success, 1 a diagnosed error
//! in a program or data, 2 a usage error (clap's own exit code for bad arguments).

mod commands;
mod output;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "camc",
    version,
    about = "Compiler and runtime for class-activation-map (CAM) expressions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and type-check .cam files; diagnostics go to stderr.
    Check(commands::check::Args),
    /// Print the compiled form of a program (IR; CPU and GPU kernels as they land).
    Emit(commands::emit::Args),
    /// Score programs on a cache with metrics (table, --json, --png, --report).
    Eval(commands::eval::Args),
    /// Run a program over every image of a cache and write the heatmaps.
    Run(commands::run::Args),
    /// Synthesize programs that score best on a metric.
    Search(commands::search::Args),
    /// List the standard library's methods, or print one.
    Stdlib(commands::stdlib::Args),
}

/// A failure already explained to the user; the process exits with status 1 (2 after
/// [`usage_error`]).
pub struct Reported;

/// Set by [`usage_error`]: errors found after clap's parsing that are still about how the
/// command was asked (a metric of a 3-D map), and exit with clap's status 2.
static USAGE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reports a usage error: the process exits with status 2.
pub fn usage_error(message: &str) -> Reported {
    output::error(message);
    USAGE.store(true, std::sync::atomic::Ordering::Relaxed);
    Reported
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Ctrl-C or SIGTERM: no half-written output stays behind (outputs appear only when whole).
    let _ = ctrlc::set_handler(|| {
        camc_runtime::output::remove_pending();
        std::process::exit(130);
    });
    // Deeply nested programs are bounded by the parser, but give the compiler room regardless.
    let worker = std::thread::Builder::new()
        .name("camc".into())
        .stack_size(64 << 20)
        .spawn(move || match cli.command {
            Command::Check(args) => commands::check::run(args),
            Command::Emit(args) => commands::emit::run(args),
            Command::Eval(args) => commands::eval::run(args),
            Command::Run(args) => commands::run::run(args),
            Command::Search(args) => commands::search::run(args),
            Command::Stdlib(args) => commands::stdlib::run(args),
        });
    let outcome = match worker {
        Ok(handle) => handle.join().unwrap_or(Err(Reported)),
        Err(error) => {
            output::error(&format!("cannot start the worker thread: {error}"));
            Err(Reported)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Reported) if USAGE.load(std::sync::atomic::Ordering::Relaxed) => ExitCode::from(2),
        Err(Reported) => ExitCode::from(1),
    }
}

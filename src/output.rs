//! How camc talks to the terminal: colour only where a person is watching.

use std::io::IsTerminal;

/// Whether stderr should carry colour: a terminal, and `NO_COLOR` unset.
pub fn color_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// An error that is not about a span of a program (a file that cannot be read, ...).
pub fn error(message: &str) {
    if color_stderr() {
        eprintln!("\x1b[31mError:\x1b[0m {message}");
    } else {
        eprintln!("Error: {message}");
    }
}

/// The warning for non-finite values a run set to 0 (`--strict` makes them an error).
pub fn warn_nonfinite(stats: &camc_runtime::run::RunStats) {
    if stats.nonfinite_values == 0 {
        return;
    }
    eprintln!(
        "warning: {} non-finite value(s) in the results of {} image(s) were set to 0 (--strict makes this an error)",
        stats.nonfinite_values, stats.nonfinite_image_count
    );
    for (image, count, culprit) in &stats.nonfinite_images {
        eprintln!("  image {image}: {count} value(s){culprit}");
    }
}

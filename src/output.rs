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

/// A count as people read it, digits grouped by three with a space: `8 936`, `1 250 000`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// A rate per second, grouped like [`grouped`] (one decimal below 10).
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second < 0.0 {
        return "-".to_string();
    }
    if per_second < 10.0 {
        return format!("{per_second:.1}");
    }
    grouped(per_second.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(8936), "8 936");
        assert_eq!(grouped(1_250_000), "1 250 000");
        assert_eq!(rate(8936.4), "8 936");
        assert_eq!(rate(2.345), "2.3");
        assert_eq!(rate(f64::NAN), "-");
    }
}

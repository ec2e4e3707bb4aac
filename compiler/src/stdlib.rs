//! The standard library of CAM methods (`stdlib/*.cam`), embedded at build time.

include!(concat!(env!("OUT_DIR"), "/stdlib_files.rs"));

/// The source of a stdlib method.
pub fn source(name: &str) -> Option<&'static str> {
    FILES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(n, _)| *n)
}

/// The first line of the file's leading comment: what the method is.
pub fn summary(name: &str) -> Option<&'static str> {
    let text = source(name)?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with('#') && !l.trim_start_matches('#').trim().is_empty())
        .map(|l| l.trim_start_matches('#').trim())
}

/// The name a stdlib file is shown under in diagnostics.
pub fn display_name(name: &str) -> String {
    format!("stdlib/{name}.cam")
}

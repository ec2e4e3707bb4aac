//! "Did you mean ...?" for misspelt names.

/// The candidate closest to `name`, if it is close enough to be a likely typo.
/// One-letter names are not guessed at: every other one-letter name would be "close".
/// Distance counts a swap of two neighbours as one edit (`reul` → `relu`).
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let length = name.chars().count();
    if length < 2 {
        return None;
    }
    let limit = (length / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name && c.chars().count() >= 2)
        .map(|c| (strsim::osa_distance(name, c), c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, c)| (*distance, *c))
        .map(|(_, c)| c)
}

pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    closest(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The help for a name that is a Python array library, as written in a NumPy/PyTorch CAM.
pub fn python_library(name: &str) -> Option<String> {
    matches!(name, "torch" | "np" | "numpy" | "F" | "math" | "tf" | "jnp").then(|| {
        format!(
            "camc has no `{name}.` functions: reductions name their axes (`mean[h,w](G)`, not `{name}.mean(G, ...)`), and `relu`, `exp`, `max(a, b)` (for `np.maximum`) are built in"
        )
    })
}

//! The size maps are post-processed to: `--size`, else the cache's `image_size` metadata, else
//! the map's own; checked against the program's map once, before any work (docs/cli.md).

use crate::{output, usage_error, Reported};
use camc_runtime::cache::Cache;
use camc_runtime::exec::MAX_MAP_VALUES;
use camc_runtime::run::scaled_shape;

fn fail(message: String) -> Reported {
    output::error(&message);
    Reported
}

fn shown(size: &[usize]) -> String {
    size.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

/// The processed shape of a map of shape `raw` for a requested size (`H,W` or `D,H,W`).
fn fit(raw: &[usize], size: &[usize], what: impl Fn() -> String) -> Result<Vec<usize>, Reported> {
    let shape = scaled_shape(raw, size).ok_or_else(|| {
        fail(format!(
            "{} does not fit the program's map of shape {raw:?}: give {} sizes",
            what(),
            match raw.len() {
                1 => "one size (W)".to_string(),
                2 => "two sizes (H,W)".to_string(),
                n => format!("{n} sizes (D,H,W) or two (H,W)"),
            }
        ))
    })?;
    let values = shape.iter().try_fold(1usize, |acc, &s| acc.checked_mul(s));
    match values {
        Some(v) if v <= MAX_MAP_VALUES => Ok(shape),
        _ => Err(fail(format!(
            "{} makes maps of {} values; camc's limit is {MAX_MAP_VALUES} values per map (8192×8192)",
            what(),
            shape.iter().map(|&s| s as u128).product::<u128>()
        ))),
    }
}

/// `camc run`'s output shape for a map of shape `raw`.
pub fn processed(cache: &Cache, raw: &[usize], requested: Option<&[usize]>) -> Result<Vec<usize>, Reported> {
    if let Some(size) = requested {
        return fit(raw, size, || format!("--size {}", shown(size)));
    }
    match cache.image_size().map_err(|e| fail(e.to_string()))? {
        Some(size) => fit(raw, &size, || image_size_of(cache, &size)),
        None => fit(raw, raw, || "the map's own size".to_string()),
    }
}

fn image_size_of(cache: &Cache, size: &[usize]) -> String {
    format!("cache `{}`: metadata image_size `{}`", cache.spec, shown(size))
}

/// The cache's `image_size`, which metrics need (they compare maps with boxes and images at
/// that size); a usage error for a cache of 3-D activations.
pub fn for_metrics(cache: &Cache) -> Result<Vec<usize>, Reported> {
    if cache.dims().map_err(|e| fail(e.to_string()))?.d != 1 {
        return Err(usage_error(&format!(
            "cache `{}` holds 3-D activations [n,k,d,h,w]; the metrics are defined on 2-D maps only (use `camc run` for 3-D maps)",
            cache.spec
        )));
    }
    let size = cache
        .image_size()
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| {
            fail(format!(
                "cache `{}` has no image_size metadata; metrics need the input size",
                cache.spec
            ))
        })?;
    if size.len() != 2 {
        return Err(fail(format!(
            "{}: metrics need the 2-D input size H,W",
            image_size_of(cache, &size)
        )));
    }
    fit(&size, &size, || image_size_of(cache, &size))
}

/// Checks that a program's map (shape `raw`, type `ty`) is an `[h,w]` map, which metrics are
/// defined on, and fits `size`.
pub fn check_metric_map(
    cache: &Cache,
    program: &str,
    ty: camc_compiler::axes::AxisSet,
    raw: &[usize],
    size: &[usize],
) -> Result<(), Reported> {
    if raw.len() != 2 {
        return Err(fail(format!(
            "`{program}` computes maps of type {ty} (shape {raw:?}); the metrics need [h,w] maps"
        )));
    }
    fit(raw, size, || image_size_of(cache, size)).map(drop)
}

//! Building the probe sets from a cache: a few images, with their terminal tensors, for the
//! enumerator (a subset of the most active channels) and for comparing candidate maps (every
//! channel).

use super::probe::Probe;
use super::term::{hw, k, khw};
use camc_compiler::axes::{Axis, AxisSet};
use camc_runtime::cache::{Cache, CacheError};
use std::ops::Range;

/// Terminal `name`'s type from its cache shape, given `A`'s `[n,k,h,w]`.
fn terminal_type(cache: &Cache, name: &str, a_shape: &[usize]) -> Result<AxisSet, CacheError> {
    let shard = &cache.shards[0];
    let info = shard.tensors.get(name).ok_or_else(|| {
        CacheError::tensor(
            &shard.path,
            name,
            "missing: the search space names it as a terminal",
        )
    })?;
    let shape = &info.shape;
    if shape.len() == 4 && shape[1..] == a_shape[1..] {
        Ok(khw())
    } else if shape.len() == 2 && shape[1] == a_shape[1] {
        Ok(k())
    } else if shape.len() == 3 && shape[1..] == a_shape[2..] {
        Ok(hw())
    } else if shape.len() == 1 {
        Ok(AxisSet::SCALAR)
    } else {
        Err(CacheError::tensor(
            &shard.path,
            name,
            format!(
                "has shape {shape:?}; a search terminal must be [n,k,h,w], [n,k], [n,h,w] or [n] (A is {a_shape:?})"
            ),
        ))
    }
}

/// One image's tensor, read as f32, from whichever shard holds it.
fn image_values(cache: &Cache, name: &str, image: usize) -> Result<Vec<f32>, CacheError> {
    let mut first = 0;
    for shard in &cache.shards {
        let n = shard.images()?;
        if image < first + n {
            let row = image - first;
            return Ok(shard.rows(name, row..row + 1)?.to_f32().into_owned());
        }
        first += n;
    }
    Err(CacheError::Other(format!(
        "image {image} is past the end of the cache"
    )))
}

/// `A`'s shape `[n,k,h,w]` (the search works on 2-D layers).
fn a_shape(cache: &Cache) -> Result<Vec<usize>, CacheError> {
    let shape = cache.shards[0]
        .tensors
        .get("A")
        .map(|t| t.shape.clone())
        .ok_or_else(|| CacheError::tensor(&cache.shards[0].path, "A", "missing"))?;
    if shape.len() != 4 {
        return Err(CacheError::tensor(
            &cache.shards[0].path,
            "A",
            "search works on 2-D layers ([n,k,h,w])",
        ));
    }
    Ok(shape)
}

/// The terminals' types, from their shapes in the cache.
pub fn terminal_types(cache: &Cache, terminals: &[String]) -> Result<Vec<AxisSet>, CacheError> {
    let a_shape = a_shape(cache)?;
    terminals
        .iter()
        .map(|t| terminal_type(cache, t, &a_shape))
        .collect()
}

/// Every channel of the images `range` (which may span shards): what the batched evaluation
/// reads, once per image, for a chunk of candidates.
pub fn block(
    cache: &Cache,
    terminals: &[String],
    types: &[AxisSet],
    range: Range<usize>,
) -> Result<Probe, CacheError> {
    let a_shape = a_shape(cache)?;
    let mut values: Vec<Vec<f32>> = vec![Vec::new(); terminals.len()];
    let mut start = 0;
    for shard in &cache.shards {
        let count = shard.images()?;
        let (lo, hi) = (range.start.max(start), range.end.min(start + count));
        if lo < hi {
            for (name, values) in terminals.iter().zip(&mut values) {
                values.extend(shard.read_rows_f32(name, lo - start..hi - start)?);
            }
        }
        start += count;
    }
    let terminals = types.iter().copied().zip(values).collect();
    Ok(Probe::new(
        range.len(),
        a_shape[1],
        a_shape[2] * a_shape[3],
        terminals,
    ))
}

/// Probes on `images`: `(small, full)`, the small one restricted to the `channels` channels
/// with the most activation over those images (ties by index).
pub fn probes(
    cache: &Cache,
    terminals: &[String],
    images: &[usize],
    channels: usize,
) -> Result<(Probe, Probe), CacheError> {
    let a_shape = a_shape(cache)?;
    let (k_all, spatial) = (a_shape[1], a_shape[2] * a_shape[3]);
    let types = terminal_types(cache, terminals)?;
    let mut full_values: Vec<Vec<f32>> = vec![Vec::new(); terminals.len()];
    for &image in images {
        for (t, name) in terminals.iter().enumerate() {
            full_values[t].extend(image_values(cache, name, image)?);
        }
    }
    let mut energy = vec![0.0f64; k_all];
    for &image in images {
        let a = image_values(cache, "A", image)?;
        for (c, channel) in a.chunks(spatial).enumerate() {
            energy[c] += channel.iter().map(|v| v.abs() as f64).sum::<f64>();
        }
    }
    let mut order: Vec<usize> = (0..k_all).collect();
    order.sort_by(|&x, &y| energy[y].total_cmp(&energy[x]).then(x.cmp(&y)));
    let mut chosen: Vec<usize> = order.into_iter().take(channels.min(k_all)).collect();
    chosen.sort_unstable();
    let small_values = types
        .iter()
        .zip(&full_values)
        .map(|(ty, values)| {
            (
                *ty,
                select_channels(*ty, values, images.len(), k_all, spatial, &chosen),
            )
        })
        .collect();
    let full = Probe::new(
        images.len(),
        k_all,
        spatial,
        types.iter().copied().zip(full_values).collect(),
    );
    let small = Probe::new(images.len(), chosen.len(), spatial, small_values);
    Ok((small, full))
}

fn select_channels(
    ty: AxisSet,
    values: &[f32],
    images: usize,
    k: usize,
    spatial: usize,
    chosen: &[usize],
) -> Vec<f32> {
    if !ty.contains(Axis::K) {
        return values.to_vec();
    }
    let per_channel = if ty == khw() { spatial } else { 1 };
    let mut out = Vec::new();
    for p in 0..images {
        for &c in chosen {
            let start = (p * k + c) * per_channel;
            out.extend_from_slice(&values[start..start + per_channel]);
        }
    }
    out
}

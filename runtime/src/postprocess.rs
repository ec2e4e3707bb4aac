//! Post-processing of a program's result, as pytorch-grad-cam produces its output for
//! one target layer: min-max, bilinear resize with half-pixel centres (OpenCV `INTER_LINEAR`,
//! torch `align_corners=False`), min-max again.

use crate::exec::{Maps, Outputs};
use camc_compiler::ops::NORMALIZE_EPS;
use camc_compiler::resize::{taps, Tap};

/// Sets non-finite values to 0; returns how many there were.
pub fn sanitize(map: &mut [f32]) -> usize {
    let mut count = 0;
    for v in map.iter_mut().filter(|v| !v.is_finite()) {
        *v = 0.0;
        count += 1;
    }
    count
}

/// `x - min(x)`, then `/ (max + 1e-7)`, like pytorch-grad-cam's `scale_cam_image`.
pub fn minmax(map: &mut [f32]) {
    let min = map.iter().copied().fold(f32::INFINITY, f32::min);
    if !min.is_finite() {
        return;
    }
    let mut max = f32::NEG_INFINITY;
    for v in map.iter_mut() {
        *v -= min;
        max = max.max(*v);
    }
    let scale = max + NORMALIZE_EPS;
    for v in map.iter_mut() {
        *v /= scale;
    }
}

/// Linear resize of `src` (row-major with `shape`) along axis `axis` to `size`.
fn resize_axis(src: &[f32], shape: &[usize], axis: usize, size: usize) -> Vec<f32> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let from = shape[axis];
    let taps = taps(from, size);
    let mut out = vec![0.0f32; outer * size * inner];
    for o in 0..outer {
        for (dst, &Tap { low, high, t }) in taps.iter().enumerate() {
            let (a, b) = ((o * from + low) * inner, (o * from + high) * inner);
            let target = &mut out[(o * size + dst) * inner..][..inner];
            for (i, value) in target.iter_mut().enumerate() {
                *value = src[a + i] * (1.0 - t) + src[b + i] * t;
            }
        }
    }
    out
}

/// Resizes a map of `shape` to `size` (same number of axes), one axis at a time from the
/// innermost out — rows first, then columns, as OpenCV does.
pub fn resize(src: &[f32], shape: &[usize], size: &[usize]) -> Vec<f32> {
    debug_assert_eq!(shape.len(), size.len());
    let mut current = src.to_vec();
    let mut current_shape = shape.to_vec();
    for axis in (0..shape.len()).rev() {
        if current_shape[axis] != size[axis] {
            current = resize_axis(&current, &current_shape, axis, size[axis]);
            current_shape[axis] = size[axis];
        }
    }
    current
}

/// `map` (of `shape`) post-processed into `out` (of `size`, as many axes): min-max, bilinear
/// resize, min-max, like pytorch-grad-cam's output for one target layer.
pub fn scale_into(map: &[f32], shape: &[usize], size: &[usize], out: &mut [f32]) {
    let mut normalized = map.to_vec();
    minmax(&mut normalized);
    out.copy_from_slice(&resize(&normalized, shape, size));
    minmax(out);
}

/// The post-processing of a backend that computes raw maps only (the interpreter, and results
/// the compiled post-processing does not cover): `raw` (one image, of `shape`) is sanitized in
/// place (unless `outputs` keep non-finite values), the processed map computed into
/// `processed` when `outputs` ask for it, and both returned as the image's [`Maps`].
pub fn host_maps<'a>(
    raw: &'a mut [f32],
    shape: &[usize],
    outputs: &Outputs,
    processed: &'a mut Vec<f32>,
) -> Maps<'a> {
    let nonfinite = if outputs.keep_nonfinite {
        raw.iter().filter(|v| !v.is_finite()).count()
    } else {
        sanitize(raw)
    };
    processed.clear();
    if let Some(size) = &outputs.processed {
        processed.resize(size.iter().product(), 0.0);
        scale_into(raw, shape, size, processed);
    }
    Maps {
        raw: if outputs.raw { raw } else { &[] },
        processed,
        nonfinite,
    }
}

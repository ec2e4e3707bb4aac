//! Post-processing of a program's result, as pytorch-grad-cam produces its output for
//! one target layer: min-max, bilinear resize with half-pixel centres (OpenCV `INTER_LINEAR`,
//! torch `align_corners=False`), min-max again.

use crate::exec::{Maps, Outputs};
use camc_compiler::ops::NORMALIZE_EPS;
use camc_compiler::resize::{taps, Tap};
use multiversion::multiversion;

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
///
/// Compiled for AVX-512 and AVX2 besides the baseline, chosen at run time (the division is the
/// search's hottest loop); every version gives the same bits.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+avx+sse4.2+sse4.1+ssse3+sse3",
    "x86_64+avx2+avx+sse4.2+sse4.1+ssse3+sse3"
))]
pub fn minmax(map: &mut [f32]) {
    let (min, max) = min_and_max(map);
    if !min.is_finite() {
        return;
    }
    // Rounding is monotone, so the largest `x - min` is `max - min` rounded: one pass finds
    // both ends, one normalizes.
    let scale = (max - min) + NORMALIZE_EPS;
    map.iter_mut().for_each(|v| *v = (*v - min) / scale);
}

#[inline(always)]
/// The smallest and largest values (NaN ignored; ±∞ when there is no other value), in eight
/// independent lanes so that the loop vectorizes: the same values as sequential folds.
fn min_and_max(values: &[f32]) -> (f32, f32) {
    let (mut low, mut high) = ([f32::INFINITY; 8], [f32::NEG_INFINITY; 8]);
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for ((low, high), &v) in low.iter_mut().zip(&mut high).zip(chunk) {
            *low = low.min(v);
            *high = high.max(v);
        }
    }
    let min = rest.iter().chain(&low).fold(f32::INFINITY, |a, &b| a.min(b));
    let max = rest.iter().chain(&high).fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    (min, max)
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
    Scaler::new(shape, size).scale_into(map, out, &mut Vec::new());
}

/// [`scale_into`] for many maps of one shape: the taps computed once, a scratch buffer
/// reused, and 2-D maps resized without the general axis walk (the search post-processes
/// every candidate's map on every image). Same arithmetic, in the same order.
pub struct Scaler {
    shape: Vec<usize>,
    size: Vec<usize>,
    /// For a 2-D resize changing both sizes: the taps of the rows (`w`) and of the columns (`h`).
    taps_2d: Option<(Vec<Tap>, Vec<Tap>)>,
}

impl Scaler {
    pub fn new(shape: &[usize], size: &[usize]) -> Scaler {
        let taps_2d = match (shape, size) {
            // `resize` leaves an axis of unchanged size alone (a tap of weight 0 would still
            // carry a NaN or an infinity into its neighbour), so only maps resized along both
            // axes take the two-pass path.
            (&[h, w], &[to_h, to_w]) if h > 0 && w > 0 && h != to_h && w != to_w => {
                Some((taps(w, to_w), taps(h, to_h)))
            }
            _ => None,
        };
        Scaler {
            shape: shape.to_vec(),
            size: size.to_vec(),
            taps_2d,
        }
    }

    /// Post-processes `map` into `out`; `scratch` is working memory kept between calls.
    pub fn scale_into(&self, map: &[f32], out: &mut [f32], scratch: &mut Vec<f32>) {
        let Some((row_taps, column_taps)) = &self.taps_2d else {
            let mut normalized = map.to_vec();
            minmax(&mut normalized);
            out.copy_from_slice(&resize(&normalized, &self.shape, &self.size));
            minmax(out);
            return;
        };
        let (h, w) = (self.shape[0], self.shape[1]);
        scratch.clear();
        scratch.extend_from_slice(map);
        minmax(scratch);
        // Rows first, as `resize` does: `h × to_w` values after the normalized input.
        scratch.resize(h * w + h * self.size[1], 0.0);
        let (normalized, rows) = scratch.split_at_mut(h * w);
        resize_2d(normalized, w, row_taps, rows, column_taps, out);
        minmax(out);
    }
}

/// `src` (rows of `w`) resized along its rows into `rows` (rows of `row_taps.len()`), then
/// along its columns into `out`: [`resize`]'s arithmetic for two axes.
#[multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+avx+sse4.2+sse4.1+ssse3+sse3",
    "x86_64+avx2+avx+sse4.2+sse4.1+ssse3+sse3"
))]
fn resize_2d(
    src: &[f32],
    w: usize,
    row_taps: &[Tap],
    rows: &mut [f32],
    column_taps: &[Tap],
    out: &mut [f32],
) {
    let to_w = row_taps.len();
    for (src, dst) in src.chunks(w).zip(rows.chunks_mut(to_w)) {
        for (value, &Tap { low, high, t }) in dst.iter_mut().zip(row_taps) {
            *value = src[low] * (1.0 - t) + src[high] * t;
        }
    }
    for (dst, &Tap { low, high, t }) in out.chunks_mut(to_w).zip(column_taps) {
        let (a, b) = (&rows[low * to_w..][..to_w], &rows[high * to_w..][..to_w]);
        for ((value, &a), &b) in dst.iter_mut().zip(a).zip(b) {
            *value = a * (1.0 - t) + b * t;
        }
    }
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

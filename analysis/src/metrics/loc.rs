//! `loc`: Grad-CAM weakly-supervised localization (docs/metrics.md).

use super::boxes::{clipped, PixelRange};
use super::{need_boxes, Better, ImageInput, Map, Mean, Metric, MetricError, MetricValue, Need};

/// The fraction of the map's maximum a pixel must reach to be kept.
pub const LOC_THRESHOLD: f64 = 0.15;

/// IoU at or above which an image counts as localized (`loc_acc`).
pub const LOC_ACC_IOU: f64 = 0.5;

/// Mean IoU (`loc`) and accuracy (`loc_acc`) of the box around the largest component.
#[derive(Clone, Debug, Default)]
pub struct Loc {
    iou: Mean,
    acc: Mean,
}

impl Metric for Loc {
    fn name(&self) -> &'static str {
        "loc"
    }

    fn better(&self) -> Better {
        Better::Higher
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Boxes]
    }

    /// The image's IoU; its accuracy follows from it.
    fn score(&self, input: &ImageInput<'_>) -> Result<Option<f64>, MetricError> {
        let map = input.map;
        let gt = clipped(need_boxes("loc", input)?, map.h, map.w)?;
        if gt.is_empty() {
            return Ok(None);
        }
        Ok(Some(match largest_component_box(&map, LOC_THRESHOLD) {
            Some(pred) => gt.iter().map(|g| pred.iou(g)).fold(0.0, f64::max),
            None => 0.0,
        }))
    }

    fn add_score(&mut self, score: Option<f64>) {
        self.iou.add(score);
        self.acc
            .add(score.map(|iou| if iou >= LOC_ACC_IOU { 1.0 } else { 0.0 }));
    }

    fn finish(&self) -> Vec<MetricValue> {
        vec![
            self.iou.value("loc", Better::Higher, 1.0),
            self.acc.value("loc_acc", Better::Higher, 1.0),
        ]
    }
}

/// The bounding box (exclusive `x1`,`y1`) of the largest 8-connected component of the pixels
/// `≥ threshold · max`. `None` when the map's maximum is ≤ 0 (nothing to localize). Between
/// components of equal size, the one whose first pixel comes first in row-major order wins.
///
/// Labelled by runs (the kept pixels of a row between two dropped ones), joined with a
/// union-find: the search scores thousands of maps per second with it, and a run scan touches
/// each pixel once where a flood fill visits its eight neighbours.
pub fn largest_component_box(map: &Map<'_>, threshold: f64) -> Option<PixelRange> {
    let max = largest(map.data);
    if max.is_nan() || max <= 0.0 {
        return None;
    }
    let cut = threshold * f64::from(max);
    let (h, w) = (map.h, map.w);
    let (runs, row_starts) = runs(map.data, h, w, cut);
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    for y in 1..h {
        for j in row_starts[y]..row_starts[y + 1] {
            for i in row_starts[y - 1]..row_starts[y] {
                // Runs of adjacent rows touch (diagonals included) when their column ranges,
                // widened by one, overlap.
                if runs[i].x0 <= runs[j].x1 && runs[j].x0 <= runs[i].x1 {
                    join(&mut parent, i, j);
                }
            }
        }
    }
    // A root is its component's first run (`join` keeps the smaller index), so the first
    // root met with the largest size is the first component in row-major order.
    let mut sizes = vec![0usize; runs.len()];
    let mut ranges: Vec<Option<PixelRange>> = vec![None; runs.len()];
    for (i, run) in runs.iter().enumerate() {
        let root = find(&mut parent, i);
        sizes[root] += run.x1 - run.x0;
        let range = ranges[root].get_or_insert(PixelRange {
            x0: w,
            y0: h,
            x1: 0,
            y1: 0,
        });
        range.x0 = range.x0.min(run.x0);
        range.y0 = range.y0.min(run.y);
        range.x1 = range.x1.max(run.x1);
        range.y1 = range.y1.max(run.y + 1);
    }
    let mut best: Option<(usize, PixelRange)> = None;
    for (size, range) in sizes.into_iter().zip(ranges) {
        if let Some(range) = range {
            if best.is_none_or(|(s, _)| size > s) {
                best = Some((size, range));
            }
        }
    }
    best.map(|(_, r)| r)
}

/// The largest value (NaN ignored), in eight lanes so that it vectorizes (for AVX-512 and
/// AVX2 too, chosen at run time).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+avx+sse4.2+sse4.1+ssse3+sse3",
    "x86_64+avx2+avx+sse4.2+sse4.1+ssse3+sse3"
))]
fn largest(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    rest.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// Kept pixels `x0..x1` of row `y`.
#[derive(Copy, Clone)]
struct Run {
    y: usize,
    x0: usize,
    x1: usize,
}

/// The runs of pixels `≥ cut`, row by row, and where each row's runs start (`h + 1` entries).
fn runs(data: &[f32], h: usize, w: usize, cut: f64) -> (Vec<Run>, Vec<usize>) {
    // For an f32 `v`, `f64(v) >= cut` exactly when `v >= cut32`, the least f32 not below `cut`.
    let mut cut32 = cut as f32;
    if f64::from(cut32) < cut {
        cut32 = cut32.next_up();
    }
    let mut runs = Vec::new();
    let mut row_starts = Vec::with_capacity(h + 1);
    for (y, row) in data.chunks(w).take(h).enumerate() {
        row_starts.push(runs.len());
        row_runs(row, cut32, y, &mut runs);
    }
    row_starts.push(runs.len());
    (runs, row_starts)
}

/// The runs of `row` (row `y`) at or above `cut`, found 64 pixels at a time from a bit mask.
/// Compiled for AVX-512 and AVX2 too (the comparisons become mask instructions), chosen at run
/// time.
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+avx+sse4.2+sse4.1+ssse3+sse3",
    "x86_64+avx2+avx+sse4.2+sse4.1+ssse3+sse3"
))]
fn row_runs(row: &[f32], cut: f32, y: usize, runs: &mut Vec<Run>) {
    let mut open: Option<usize> = None;
    for (word, chunk) in row.chunks(64).enumerate() {
        let base = word * 64;
        let len = chunk.len();
        // Bits past `len` are 0. Eight at a time, so that each eight is one vector compare.
        let mut bits = 0u64;
        for (k, eight) in chunk.chunks(8).enumerate() {
            let byte = eight
                .iter()
                .enumerate()
                .fold(0u64, |mask, (j, &v)| mask | (u64::from(v >= cut) << j));
            bits |= byte << (8 * k);
        }
        let mut x = 0;
        while x < len {
            let rest = bits >> x;
            match open {
                None => {
                    let skip = rest.trailing_zeros() as usize;
                    if x + skip >= len {
                        break;
                    }
                    x += skip;
                    open = Some(base + x);
                }
                Some(x0) => {
                    x += rest.trailing_ones() as usize;
                    if x < len {
                        runs.push(Run { y, x0, x1: base + x });
                        open = None;
                    }
                }
            }
        }
    }
    if let Some(x0) = open {
        runs.push(Run { y, x0, x1: row.len() });
    }
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// Joins the sets of `a` and `b` under the smaller root.
fn join(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    let (low, high) = if ra < rb { (ra, rb) } else { (rb, ra) };
    parent[high] = low;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, as a flood fill over 8 neighbours.
    fn flood_fill_box(map: &Map<'_>, threshold: f64) -> Option<PixelRange> {
        let max = map.data.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        if max.is_nan() || max <= 0.0 {
            return None;
        }
        let cut = threshold * f64::from(max);
        let (h, w) = (map.h, map.w);
        let keep: Vec<bool> = map.data.iter().map(|&v| f64::from(v) >= cut).collect();
        let mut seen = vec![false; h * w];
        let mut best: Option<(usize, PixelRange)> = None;
        for start in 0..h * w {
            if !keep[start] || seen[start] {
                continue;
            }
            seen[start] = true;
            let mut stack = vec![start];
            let mut size = 0;
            let mut range = PixelRange {
                x0: w,
                y0: h,
                x1: 0,
                y1: 0,
            };
            while let Some(p) = stack.pop() {
                let (y, x) = (p / w, p % w);
                size += 1;
                range.x0 = range.x0.min(x);
                range.y0 = range.y0.min(y);
                range.x1 = range.x1.max(x + 1);
                range.y1 = range.y1.max(y + 1);
                for ny in y.saturating_sub(1)..(y + 2).min(h) {
                    for nx in x.saturating_sub(1)..(x + 2).min(w) {
                        let q = ny * w + nx;
                        if keep[q] && !seen[q] {
                            seen[q] = true;
                            stack.push(q);
                        }
                    }
                }
            }
            if best.is_none_or(|(s, _)| size > s) {
                best = Some((size, range));
            }
        }
        best.map(|(_, r)| r)
    }

    #[test]
    fn run_labelling_equals_the_flood_fill_on_random_maps() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for case in 0..3000 {
            // Widths past 64 cross the 64-pixel words of the run finder.
            let wide = case % 10 == 0;
            let (h, w) = (
                1 + (next() % 12) as usize,
                1 + (next() % if wide { 150 } else { 12 }) as usize,
            );
            // Few distinct levels, so that ties, diagonal touches and equal-size components
            // are common.
            let levels = 2 + next() % 4;
            let data: Vec<f32> = (0..h * w)
                .map(|_| (next() % levels) as f32 / levels as f32)
                .collect();
            let map = Map::new(&data, h, w).expect("map");
            for threshold in [0.15, 0.5, 0.9] {
                let (fast, slow) = (
                    largest_component_box(&map, threshold),
                    flood_fill_box(&map, threshold),
                );
                assert_eq!(
                    fast.map(|r| (r.x0, r.y0, r.x1, r.y1)),
                    slow.map(|r| (r.x0, r.y0, r.x1, r.y1)),
                    "case {case}: {h}x{w} {data:?} at {threshold}"
                );
            }
        }
    }
}

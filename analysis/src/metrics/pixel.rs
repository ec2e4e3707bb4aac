//! Pixel-level box metrics: `iou`, `pointing`, `energy` (docs/metrics.md).

use super::boxes::{clipped, PixelRange};
use super::{need_boxes, Better, ImageInput, Map, Mean, Metric, MetricError, MetricValue, Need};

/// The threshold of the `iou` metric's predicted mask.
pub const IOU_THRESHOLD: f32 = 0.5;

/// The union of the image's clipped boxes as a row-major mask, or `None` when no box covers
/// a pixel (the image is skipped).
fn box_mask(metric: &'static str, input: &ImageInput<'_>) -> Result<Option<Vec<bool>>, MetricError> {
    let map = input.map;
    let boxes: Vec<PixelRange> = clipped(need_boxes(metric, input)?, map.h, map.w)?;
    if boxes.is_empty() {
        return Ok(None);
    }
    let mut mask = vec![false; map.h * map.w];
    for b in &boxes {
        for y in b.y0..b.y1 {
            mask[y * map.w + b.x0..y * map.w + b.x1].fill(true);
        }
    }
    Ok(Some(mask))
}

/// Pixel IoU of `{map ≥ 0.5}` with the union of the boxes.
#[derive(Clone, Debug, Default)]
pub struct Iou(Mean);

impl Metric for Iou {
    fn name(&self) -> &'static str {
        "iou"
    }

    fn better(&self) -> Better {
        Better::Higher
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Boxes]
    }

    fn score(&self, input: &ImageInput<'_>) -> Result<Option<f64>, MetricError> {
        let Some(mask) = box_mask("iou", input)? else {
            return Ok(None);
        };
        let (mut inter, mut union) = (0usize, 0usize);
        for (&v, &inside) in input.map.data.iter().zip(&mask) {
            let pred = v >= IOU_THRESHOLD;
            inter += usize::from(pred && inside);
            union += usize::from(pred || inside);
        }
        // `union` ≥ the boxes' area > 0.
        Ok(Some(inter as f64 / union as f64))
    }

    fn add_score(&mut self, score: Option<f64>) {
        self.0.add(score);
    }

    fn finish(&self) -> Vec<MetricValue> {
        vec![self.0.value("iou", Better::Higher, 1.0)]
    }
}

/// The position `(y, x)` of the map's maximum, the first in row-major order among equal
/// maxima; `None` when the maximum is ≤ 0 (an empty map points nowhere).
pub fn argmax(map: &Map<'_>) -> Option<(usize, usize)> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in map.data.iter().enumerate() {
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.filter(|&(_, v)| v > 0.0)
        .map(|(i, _)| (i / map.w, i % map.w))
}

/// Fraction of images whose maximum lies inside a box (pointing game).
#[derive(Clone, Debug, Default)]
pub struct Pointing(Mean);

impl Metric for Pointing {
    fn name(&self) -> &'static str {
        "pointing"
    }

    fn better(&self) -> Better {
        Better::Higher
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Boxes]
    }

    fn score(&self, input: &ImageInput<'_>) -> Result<Option<f64>, MetricError> {
        let Some(mask) = box_mask("pointing", input)? else {
            return Ok(None);
        };
        let hit = argmax(&input.map).is_some_and(|(y, x)| mask[y * input.map.w + x]);
        Ok(Some(if hit { 1.0 } else { 0.0 }))
    }

    fn add_score(&mut self, score: Option<f64>) {
        self.0.add(score);
    }

    fn finish(&self) -> Vec<MetricValue> {
        vec![self.0.value("pointing", Better::Higher, 1.0)]
    }
}

/// The mass of a run of pixels: their sum, negative values counted as 0 (outside the
/// post-processed range they carry no mass). Eight f32 lanes (a run is at most a row, values
/// in [0, 1]), so that it vectorizes; compiled for AVX-512 and AVX2 too (same bits).
#[multiversion::multiversion(targets(
    "x86_64+avx512f+avx512bw+avx512vl+avx512dq+avx2+avx+sse4.2+sse4.1+ssse3+sse3",
    "x86_64+avx2+avx+sse4.2+sse4.1+ssse3+sse3"
))]
fn mass(values: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += v.max(0.0);
        }
    }
    let rest: f32 = rest.iter().map(|v| v.max(0.0)).sum();
    lanes.iter().map(|&v| f64::from(v)).sum::<f64>() + f64::from(rest)
}

/// Energy-based pointing game: the map's mass inside the boxes over its total mass.
#[derive(Clone, Debug, Default)]
pub struct Energy(Mean);

impl Metric for Energy {
    fn name(&self) -> &'static str {
        "energy"
    }

    fn better(&self) -> Better {
        Better::Higher
    }

    fn needs(&self) -> &'static [Need] {
        &[Need::Boxes]
    }

    fn score(&self, input: &ImageInput<'_>) -> Result<Option<f64>, MetricError> {
        let map = input.map;
        let boxes: Vec<PixelRange> = clipped(need_boxes("energy", input)?, map.h, map.w)?;
        if boxes.is_empty() {
            return Ok(None);
        }
        // Row by row: the row's mass, and the mass of the columns the boxes cover in it (their
        // union, as disjoint spans), each summed in f32 lanes and added up in f64.
        let (mut inside, mut total) = (0f64, 0f64);
        let mut spans: Vec<(usize, usize)> = Vec::with_capacity(boxes.len());
        for (y, row) in map.data.chunks(map.w).enumerate() {
            total += mass(row);
            spans.clear();
            spans.extend(
                boxes
                    .iter()
                    .filter(|b| (b.y0..b.y1).contains(&y))
                    .map(|b| (b.x0, b.x1)),
            );
            spans.sort_unstable();
            let mut covered = 0;
            for &(x0, x1) in &spans {
                let from = x0.max(covered);
                if from < x1 {
                    inside += mass(&row[from..x1]);
                    covered = x1;
                }
            }
        }
        Ok(Some(if total > 0.0 { inside / total } else { 0.0 }))
    }

    fn add_score(&mut self, score: Option<f64>) {
        self.0.add(score);
    }

    fn finish(&self) -> Vec<MetricValue> {
        vec![self.0.value("energy", Better::Higher, 1.0)]
    }
}

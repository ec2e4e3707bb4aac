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
        let Some(mask) = box_mask("energy", input)? else {
            return Ok(None);
        };
        // Negative values (outside the post-processed range) carry no mass. Eight partial
        // sums, so that the sums vectorize.
        let (mut inside, mut total) = ([0f64; 8], [0f64; 8]);
        for (values, inside_box) in input.map.data.chunks(8).zip(mask.chunks(8)) {
            for (lane, (&v, &m)) in values.iter().zip(inside_box).enumerate() {
                let v = f64::from(v.max(0.0));
                total[lane] += v;
                inside[lane] += if m { v } else { 0.0 };
            }
        }
        let (inside, total): (f64, f64) = (inside.iter().sum(), total.iter().sum());
        Ok(Some(if total > 0.0 { inside / total } else { 0.0 }))
    }

    fn add_score(&mut self, score: Option<f64>) {
        self.0.add(score);
    }

    fn finish(&self) -> Vec<MetricValue> {
        vec![self.0.value("energy", Better::Higher, 1.0)]
    }
}

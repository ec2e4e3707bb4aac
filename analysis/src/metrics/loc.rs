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
pub fn largest_component_box(map: &Map<'_>, threshold: f64) -> Option<PixelRange> {
    let max = map.data.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if max.is_nan() || max <= 0.0 {
        return None;
    }
    let cut = threshold * f64::from(max);
    let (h, w) = (map.h, map.w);
    let keep: Vec<bool> = map.data.iter().map(|&v| f64::from(v) >= cut).collect();
    let mut seen = vec![false; h * w];
    let mut stack = Vec::new();
    let mut best: Option<(usize, PixelRange)> = None;
    for start in 0..h * w {
        if !keep[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut size, mut range) = (
            0usize,
            PixelRange {
                x0: w,
                y0: h,
                x1: 0,
                y1: 0,
            },
        );
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

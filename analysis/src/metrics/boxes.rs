//! Ground-truth boxes: `x0,y0,x1,y1` in input pixels, `x1`,`y1` exclusive (docs/cache.md).

use super::MetricError;

/// A ground-truth box as stored in the cache. A pixel `(x, y)` is inside when its centre
/// `(x+0.5, y+0.5)` is: `x0 ≤ x+0.5 < x1` and `y0 ≤ y+0.5 < y1`; for integer coordinates that is
/// exactly `x0 ≤ x < x1`, `y0 ≤ y < y1`.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

/// Whole pixels `x0..x1` × `y0..y1` (exclusive ends), inside the image.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PixelRange {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl PixelRange {
    pub fn is_empty(&self) -> bool {
        self.x0 >= self.x1 || self.y0 >= self.y1
    }

    pub fn area(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            (self.x1 - self.x0) * (self.y1 - self.y0)
        }
    }

    pub fn contains(&self, y: usize, x: usize) -> bool {
        (self.x0..self.x1).contains(&x) && (self.y0..self.y1).contains(&y)
    }

    /// Intersection over union of two pixel boxes; 0 when both are empty.
    pub fn iou(&self, other: &PixelRange) -> f64 {
        let inter = PixelRange {
            x0: self.x0.max(other.x0),
            y0: self.y0.max(other.y0),
            x1: self.x1.min(other.x1),
            y1: self.y1.min(other.y1),
        }
        .area();
        let union = self.area() + other.area() - inter;
        if union == 0 {
            0.0
        } else {
            inter as f64 / union as f64
        }
    }
}

impl BBox {
    pub const fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> BBox {
        BBox { x0, y0, x1, y1 }
    }

    /// The pixels of the box clipped to an `h`×`w` image; empty for a box entirely outside,
    /// of zero area or inverted (`x1 ≤ x0`).
    pub fn pixels(&self, h: usize, w: usize) -> PixelRange {
        PixelRange {
            x0: edge(self.x0, w),
            y0: edge(self.y0, h),
            x1: edge(self.x1, w),
            y1: edge(self.y1, h),
        }
    }
}

/// The first pixel index whose centre is at or right of `c`, clamped to `0..=n`.
fn edge(c: f32, n: usize) -> usize {
    let v = (f64::from(c) - 0.5).ceil();
    if v <= 0.0 {
        0
    } else if v >= n as f64 {
        n
    } else {
        v as usize
    }
}

/// The non-empty pixel ranges of an image's boxes, clipped to the image; an error if a
/// coordinate is not finite.
pub(crate) fn clipped(boxes: &[BBox], h: usize, w: usize) -> Result<Vec<PixelRange>, MetricError> {
    let mut out = Vec::with_capacity(boxes.len());
    for b in boxes {
        for c in [b.x0, b.y0, b.x1, b.y1] {
            if !c.is_finite() {
                return Err(MetricError::NonFinite {
                    what: "ground-truth box",
                    value: f64::from(c),
                });
            }
        }
        let r = b.pixels(h, w);
        if !r.is_empty() {
            out.push(r);
        }
    }
    Ok(out)
}

/// Splits the cache's `boxes` tensor into per-image box lists. `shape` is `[n,4]` (one box per
/// image) or `[n,m,4]`; with `box_count` (`[n]`), image `i` has its first `box_count[i]` boxes,
/// otherwise all `m` (padding rows of zero area are ignored by the metrics anyway).
pub fn boxes_per_image(
    data: &[f32],
    shape: &[usize],
    box_count: Option<&[i64]>,
) -> Result<Vec<Vec<BBox>>, MetricError> {
    let (n, m) = match *shape {
        [n, 4] => (n, 1),
        [n, m, 4] => (n, m),
        _ => {
            return Err(MetricError::Invalid(format!(
                "tensor `boxes` has shape {shape:?}; expected [n,4] or [n,m,4]"
            )))
        }
    };
    let expected = n
        .checked_mul(m)
        .and_then(|x| x.checked_mul(4))
        .unwrap_or(usize::MAX);
    if data.len() != expected {
        return Err(MetricError::Shape {
            what: format!("tensor `boxes` {shape:?}"),
            expected,
            got: data.len(),
        });
    }
    if let Some(counts) = box_count {
        if counts.len() != n {
            return Err(MetricError::Shape {
                what: "tensor `box_count`".into(),
                expected: n,
                got: counts.len(),
            });
        }
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let count = match box_count {
            Some(counts) => {
                let c = counts[i];
                if c < 0 || c as u64 > m as u64 {
                    return Err(MetricError::Invalid(format!(
                        "box_count[{i}] = {c}, but tensor `boxes` holds {m} boxes per image"
                    )));
                }
                c as usize
            }
            None => m,
        };
        let rows = &data[i * m * 4..(i * m + count) * 4];
        out.push(
            rows.chunks_exact(4)
                .map(|b| BBox::new(b[0], b[1], b[2], b[3]))
                .collect(),
        );
    }
    Ok(out)
}

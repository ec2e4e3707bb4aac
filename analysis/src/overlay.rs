//! Heatmap overlays (`camc run --png DIR`): one PNG per image, the post-processed heatmap in a
//! perceptual colormap (colorous), alpha-blended over the image when the cache has one, with
//! the ground-truth boxes drawn as rectangles. See `docs/metrics.md`.

use crate::metrics::{clipped, BBox, MetricError};
use std::path::{Path, PathBuf};

/// Perceptual colormaps (from the `colorous` crate).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Colormap {
    /// Google's Turbo: a perceptually smoothed jet (pytorch-grad-cam's default is jet).
    #[default]
    Turbo,
    Viridis,
    Inferno,
    Magma,
    Plasma,
    Cividis,
}

impl Colormap {
    pub const NAMES: &'static [&'static str] = &["turbo", "viridis", "inferno", "magma", "plasma", "cividis"];

    pub fn by_name(name: &str) -> Option<Colormap> {
        Some(match name {
            "turbo" => Colormap::Turbo,
            "viridis" => Colormap::Viridis,
            "inferno" => Colormap::Inferno,
            "magma" => Colormap::Magma,
            "plasma" => Colormap::Plasma,
            "cividis" => Colormap::Cividis,
            _ => return None,
        })
    }

    fn gradient(self) -> colorous::Gradient {
        match self {
            Colormap::Turbo => colorous::TURBO,
            Colormap::Viridis => colorous::VIRIDIS,
            Colormap::Inferno => colorous::INFERNO,
            Colormap::Magma => colorous::MAGMA,
            Colormap::Plasma => colorous::PLASMA,
            Colormap::Cividis => colorous::CIVIDIS,
        }
    }

    /// The colour of value `t`, clamped to [0,1]; NaN is 0.
    pub fn color(self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let c = self.gradient().eval_continuous(f64::from(t));
        [c.r, c.g, c.b]
    }
}

#[derive(Copy, Clone, Debug, PartialEq)]
pub struct OverlayStyle {
    pub colormap: Colormap,
    /// Weight of the heatmap colour over the image (pytorch-grad-cam's `1 − image_weight`).
    pub alpha: f32,
    pub box_color: [u8; 3],
    /// Rectangle line width in pixels, drawn inside the box.
    pub box_width: usize,
}

impl Default for OverlayStyle {
    fn default() -> Self {
        OverlayStyle {
            colormap: Colormap::Turbo,
            alpha: 0.5,
            box_color: [0, 255, 0],
            box_width: 2,
        }
    }
}

/// One image's overlay inputs.
#[derive(Copy, Clone, Debug)]
pub struct OverlayInput<'a> {
    /// The post-processed heatmap, already resized to the image size: row-major `[h,w]`.
    pub map: &'a [f32],
    pub h: usize,
    pub w: usize,
    /// The image, `[3,h,w]` uint8 (the cache's `image` layout), if the cache has one.
    pub image: Option<&'a [u8]>,
    /// Ground-truth boxes to draw (none: draw nothing).
    pub boxes: &'a [BBox],
}

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay: {what}: expected {expected} values, got {got}")]
    Shape {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("overlay: {0}")]
    Box(#[from] MetricError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// The file name of image `index`'s overlay in `--png DIR`: `00012.png`.
pub fn overlay_file_name(index: usize) -> String {
    format!("{index:05}.png")
}

/// Renders the overlay of one image.
pub fn render_overlay(
    input: &OverlayInput<'_>,
    style: &OverlayStyle,
) -> Result<image::RgbImage, OverlayError> {
    let (h, w) = (input.h, input.w);
    let pixels = h.saturating_mul(w);
    let dims_ok = u32::try_from(h).is_ok() && u32::try_from(w).is_ok();
    if pixels == 0 || !dims_ok || input.map.len() != pixels {
        return Err(OverlayError::Shape {
            what: "heatmap",
            expected: pixels,
            got: input.map.len(),
        });
    }
    if let Some(image) = input.image {
        if image.len() != pixels.saturating_mul(3) {
            return Err(OverlayError::Shape {
                what: "image [3,H,W]",
                expected: pixels.saturating_mul(3),
                got: image.len(),
            });
        }
    }
    let alpha = if style.alpha.is_nan() {
        0.5
    } else {
        style.alpha.clamp(0.0, 1.0)
    };
    let mut rgb = vec![0u8; pixels * 3];
    for (i, &v) in input.map.iter().enumerate() {
        let heat = style.colormap.color(v);
        for c in 0..3 {
            rgb[i * 3 + c] = match input.image {
                Some(image) => blend(heat[c], image[c * pixels + i], alpha),
                None => heat[c],
            };
        }
    }
    for b in clipped(input.boxes, h, w)? {
        let bw = style.box_width;
        for y in b.y0..b.y1 {
            for x in b.x0..b.x1 {
                let edge = x < b.x0 + bw || x + bw >= b.x1 || y < b.y0 + bw || y + bw >= b.y1;
                if edge {
                    rgb[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&style.box_color);
                }
            }
        }
    }
    // The dimensions fit u32 and the buffer has w·h·3 bytes, so this cannot fail.
    image::RgbImage::from_raw(w as u32, h as u32, rgb).ok_or(OverlayError::Shape {
        what: "pixel buffer",
        expected: pixels * 3,
        got: 0,
    })
}

/// `alpha · heat + (1 − alpha) · image`, rounded.
fn blend(heat: u8, image: u8, alpha: f32) -> u8 {
    (alpha * f32::from(heat) + (1.0 - alpha) * f32::from(image))
        .round()
        .clamp(0.0, 255.0) as u8
}

/// Renders one overlay and writes it as a PNG to `path`.
pub fn write_overlay(
    path: &Path,
    input: &OverlayInput<'_>,
    style: &OverlayStyle,
) -> Result<(), OverlayError> {
    let img = render_overlay(input, style)?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| OverlayError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes an image, `[3,h,w]` uint8 (the cache's `image` layout), as a PNG to `path`.
pub fn write_photo(path: &Path, image: &[u8], h: usize, w: usize) -> Result<(), OverlayError> {
    let pixels = h.saturating_mul(w);
    if image.len() != pixels.saturating_mul(3) || u32::try_from(h).is_err() || u32::try_from(w).is_err() {
        return Err(OverlayError::Shape {
            what: "image [3,H,W]",
            expected: pixels.saturating_mul(3),
            got: image.len(),
        });
    }
    let rgb = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let p = y as usize * w + x as usize;
        image::Rgb([image[p], image[pixels + p], image[2 * pixels + p]])
    });
    rgb.save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| OverlayError::Write {
            path: path.to_path_buf(),
            source,
        })
}

//! `--png DIR`: one overlay PNG per image (the heatmap in a perceptual colormap over `image`
//! when the cache has it, with the ground-truth boxes).

use camc_analysis::evaluate::MetricData;
use camc_analysis::overlay::{overlay_file_name, write_overlay, OverlayInput, OverlayStyle};
use std::path::{Path, PathBuf};

/// Writes image `index`'s overlay into `dir`, which must exist (it is not created here, so
/// that an output folder removed on Ctrl-C is not made again by a worker); returns its path.
pub fn write(dir: &Path, index: usize, map: &[f32], data: &MetricData) -> Result<PathBuf, String> {
    let path = dir.join(overlay_file_name(index));
    let (h, w) = match data.size[..] {
        [h, w] => (h, w),
        _ => return Err("overlays need a 2-D (H,W) map".into()),
    };
    let input = OverlayInput {
        map,
        h,
        w,
        image: data.image(index),
        boxes: data.boxes_of(index),
    };
    write_overlay(&path, &input, &OverlayStyle::default()).map_err(|e| e.to_string())?;
    Ok(path)
}

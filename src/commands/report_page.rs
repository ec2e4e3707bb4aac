//! What `eval --report` puts on the page besides the metric table: the provenance header, the
//! grid's input column and captions, and each overlay's per-image scores.

use crate::output;
use crate::Reported;
use camc_analysis::evaluate::MetricData;
use camc_analysis::overlay::write_photo;
use camc_analysis::report::GridRow;
use camc_runtime::cache::Cache;
use std::path::Path;

/// The grid's rows for the first `images` images: label, caption (target and predicted
/// class) and the input image, written as `DIR/input/NNNNN.png` where the cache has images.
pub fn grid(dir: &Path, data: &MetricData, images: usize) -> Result<Vec<GridRow>, Reported> {
    let mut rows = Vec::with_capacity(images);
    for i in 0..images {
        let input = match (data.image(i), &data.size[..]) {
            (Some(pixels), &[h, w]) => {
                let folder = dir.join("input");
                let file = format!("{i:05}.png");
                std::fs::create_dir_all(&folder)
                    .map_err(|e| e.to_string())
                    .and_then(|()| write_photo(&folder.join(&file), pixels, h, w).map_err(|e| e.to_string()))
                    .map_err(|e| {
                        output::error(&format!("report: {e}"));
                        Reported
                    })?;
                Some(format!("input/{file}"))
            }
            _ => None,
        };
        rows.push(GridRow {
            label: format!("image {i}"),
            caption: data.caption(i),
            input,
            ..GridRow::default()
        });
    }
    Ok(rows)
}

/// One image's metric values (in the table's units), as shown when hovering its overlay.
pub fn hover(metrics: &[(&str, f64)], scores: &[Option<f64>]) -> String {
    metrics
        .iter()
        .zip(scores)
        .map(|((name, unit), score)| match score {
            Some(v) => format!("{name} {:.4}", v * unit),
            None => format!("{name} n/a"),
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Where the numbers come from: the cache, its model and layer metadata, camc's version and
/// today's date (UTC).
pub fn provenance(cache: &Cache) -> Vec<(String, String)> {
    let mut items = vec![("cache".to_string(), cache.spec.clone())];
    if let Some(first) = cache.shards.first() {
        for key in ["model", "layer"] {
            if let Some(value) = first.metadata.get(key) {
                items.push((key.to_string(), value.clone()));
            }
        }
    }
    if let Ok(n) = cache.images() {
        items.push(("images".to_string(), n.to_string()));
    }
    items.push(("camc".to_string(), env!("CARGO_PKG_VERSION").to_string()));
    items.push(("date".to_string(), today()));
    items
}

/// Today's date, `YYYY-MM-DD` (UTC), from the system clock.
fn today() -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    stamp.chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn today_is_a_date() {
        let text = super::today();
        assert_eq!(text.len(), 10, "{text}");
        assert!(text.starts_with("20") && text.as_bytes()[4] == b'-', "{text}");
    }
}

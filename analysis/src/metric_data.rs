//! What metrics and overlays read from a cache besides the maps, loaded once and checked
//! against `A` before anything is computed: `target` `[n]` (integer classes inside the head),
//! `head.weight` `[C,k]` and `head.bias` `[C]`, `boxes` `[n,4]` or `[n,m,4]` (with `box_count`
//! `[n]`), and `image` (uint8 `[n,3,H,W]`, `[n,H,W,3]`, `[n,1,H,W]` or `[n,H,W]`). Each error
//! names the file, the tensor and what was expected (docs/cache.md).

use crate::evaluate::EvalError;
use crate::metrics::{boxes_per_image, check_needs, BBox, Metric, Need};
use camc_compiler::dtype::Dtype;
use camc_runtime::cache::{Cache, CacheError, Shard};

/// What the metrics read from a cache, loaded once: small tensors only (`A` is read per batch).
pub struct MetricData {
    pub boxes: Option<Vec<Vec<BBox>>>,
    pub(crate) head: Option<(Vec<f32>, Vec<f32>)>,
    pub(crate) targets: Option<Vec<i64>>,
    /// The size the maps are post-processed to.
    pub size: Vec<usize>,
    /// `[3,H,W]` uint8 per image at the map size, when the cache has `image`.
    images: Option<Vec<u8>>,
    /// The model's predicted class per image (argmax of `logits`), and the true `label`.
    predicted: Option<Vec<usize>>,
    labels: Option<Vec<i64>>,
}

fn bad(shard: &Shard, tensor: &str, message: String) -> CacheError {
    CacheError::tensor(&shard.path, tensor, message)
}

/// A tensor's shape and values.
type Tensor = (Vec<usize>, Vec<f32>);

/// A tensor of every shard, concatenated, as f32, after `check(shard, images, shape)`.
fn whole(
    cache: &Cache,
    name: &str,
    check: impl Fn(&Shard, usize, &[usize]) -> Result<(), CacheError>,
) -> Result<Option<Tensor>, CacheError> {
    if !cache.has(name) {
        return Ok(None);
    }
    let mut shape = Vec::new();
    let mut values = Vec::new();
    for shard in &cache.shards {
        let (s, v) = shard.f32(name)?;
        check(shard, shard.images()?, &s)?;
        if shape.is_empty() {
            shape = s;
        } else {
            shape[0] += s.first().copied().unwrap_or(0);
        }
        values.extend(v);
    }
    Ok(Some((shape, values)))
}

/// A tensor of one value per image: `[n]` (or `[n,1]`).
fn per_image(shard: &Shard, name: &str, n: usize, shape: &[usize]) -> Result<(), CacheError> {
    match shape {
        [m] | [m, 1] if *m == n => Ok(()),
        _ => Err(bad(
            shard,
            name,
            format!("has shape {shape:?}; expected [{n}], one value per image (A holds {n} images)"),
        )),
    }
}

/// The head's weight and bias (one head for the dataset: the first shard's, every shard
/// holding the same shapes), shapes checked against `A`'s `k` channels.
fn load_head(cache: &Cache, k: usize) -> Result<(Vec<f32>, Vec<f32>), CacheError> {
    let first = &cache.shards[0];
    let (bias_shape, bias) = first.f32("head.bias")?;
    let [classes] = bias_shape[..] else {
        return Err(bad(
            first,
            "head.bias",
            format!("has shape {bias_shape:?}; expected [C], one value per class"),
        ));
    };
    let (weight_shape, weight) = first.f32("head.weight")?;
    match weight_shape[..] {
        [c, kk] if c == classes && kk == k => {}
        [c, kk] if c == k && kk == classes => {
            return Err(bad(
                first,
                "head.weight",
                format!("has shape {weight_shape:?}, the transpose of [C,k] = [{classes},{k}] (C from head.bias, k from A): save the classifier's weight as it is"),
            ))
        }
        _ => {
            return Err(bad(
                first,
                "head.weight",
                format!("has shape {weight_shape:?}; expected [C,k] = [{classes},{k}] (C from head.bias, k from A)"),
            ))
        }
    }
    for shard in &cache.shards[1..] {
        for (name, shape) in [("head.bias", &bias_shape), ("head.weight", &weight_shape)] {
            let theirs = shard.tensors.get(name).map(|t| &t.shape);
            if theirs != Some(shape) {
                return Err(bad(
                    shard,
                    name,
                    format!("has shape {theirs:?}, unlike the first shard's {shape:?}"),
                ));
            }
        }
    }
    Ok((weight, bias))
}

/// `target`: one integer class per image, inside the head's `classes` when there is a head.
fn load_targets(cache: &Cache, classes: Option<usize>) -> Result<Option<Vec<i64>>, CacheError> {
    let Some((_, values)) = whole(cache, "target", |shard, n, shape| {
        per_image(shard, "target", n, shape)
    })?
    else {
        return Ok(None);
    };
    let first = &cache.shards[0];
    let mut targets = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        let class = v as i64;
        if class as f32 != v || class < 0 || classes.is_some_and(|c| class >= c as i64) {
            let range = classes.map_or("a class index ≥ 0".to_string(), |c| {
                format!("a class in 0..{c}")
            });
            return Err(bad(
                first,
                "target",
                format!("image {i} has target {v}; expected {range}"),
            ));
        }
        targets.push(class);
    }
    Ok(Some(targets))
}

fn load_boxes(cache: &Cache) -> Result<Option<Vec<Vec<BBox>>>, EvalError> {
    let counts = whole(cache, "box_count", |shard, n, shape| {
        per_image(shard, "box_count", n, shape)
    })?
    .map(|(_, c)| c.iter().map(|&v| v as i64).collect::<Vec<_>>());
    let boxes = whole(cache, "boxes", |shard, n, shape| {
        match shape {
        [m, 4] | [m, _, 4] if *m == n => Ok(()),
        _ => Err(bad(
            shard,
            "boxes",
            format!("has shape {shape:?}; expected [{n},4] or [{n},m,4] (x0,y0,x1,y1 per box; A holds {n} images)"),
        )),
    }
    })?;
    match boxes {
        Some((shape, data)) => Ok(Some(boxes_per_image(&data, &shape, counts.as_deref())?)),
        None => Ok(None),
    }
}

/// One shard's images as `[3,H,W]` uint8 each, from the layouts exporters write.
fn shard_images(shard: &Shard, n: usize) -> Result<(Vec<u8>, usize, usize), CacheError> {
    let (info, bytes) = shard
        .raw("image")
        .ok_or_else(|| bad(shard, "image", "missing".into()))?;
    if info.dtype != Dtype::U8 {
        return Err(bad(
            shard,
            "image",
            format!(
                "has dtype {}; camc draws uint8 images [n,3,H,W] (0–255), as the exporter writes them",
                info.dtype.name()
            ),
        ));
    }
    let layout = match info.shape[..] {
        [m, 3, h, w] if m == n => Some((h, w, 3, false)),
        [m, h, w, 3] if m == n => Some((h, w, 3, true)),
        [m, 1, h, w] | [m, h, w] if m == n => Some((h, w, 1, false)),
        _ => None,
    };
    let Some((h, w, channels, interleaved)) = layout else {
        return Err(bad(
            shard,
            "image",
            format!(
                "has shape {:?}; expected [{n},3,H,W], [{n},H,W,3], [{n},1,H,W] or [{n},H,W]",
                info.shape
            ),
        ));
    };
    let mut out = vec![0u8; n * 3 * h * w];
    for (image, planes) in out.chunks_mut(3 * h * w).enumerate() {
        let src = &bytes[image * channels * h * w..][..channels * h * w];
        for (c, plane) in planes.chunks_mut(h * w).enumerate() {
            for (p, value) in plane.iter_mut().enumerate() {
                *value = match (channels, interleaved) {
                    (1, _) => src[p],
                    (_, true) => src[p * 3 + c],
                    _ => src[c * h * w + p],
                };
            }
        }
    }
    Ok((out, h, w))
}

/// Every image resized to `size` (`[H,W]`) for overlays, bilinear.
fn load_images(cache: &Cache, size: &[usize]) -> Result<Option<Vec<u8>>, CacheError> {
    let (&[oh, ow], true) = (size, cache.has("image")) else {
        return Ok(None);
    };
    let mut all = Vec::new();
    for shard in &cache.shards {
        let (planes, h, w) = shard_images(shard, shard.images()?)?;
        if (h, w) == (oh, ow) {
            all.extend(planes);
            continue;
        }
        for image in planes.chunks(3 * h * w) {
            let rgb = image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
                let p = y as usize * w + x as usize;
                image::Rgb([image[p], image[h * w + p], image[2 * h * w + p]])
            });
            let resized =
                image::imageops::resize(&rgb, ow as u32, oh as u32, image::imageops::FilterType::Triangle);
            for c in 0..3 {
                all.extend(resized.pixels().map(|px| px.0[c]));
            }
        }
    }
    Ok(Some(all))
}

impl MetricData {
    /// Loads what `metrics` need from `cache` (a clear error naming the metric and tensor when
    /// something is missing or malformed), plus `image` and `boxes` for overlays when present:
    /// maps are post-processed to `size`; boxes are given in the cache's `image_size` pixels
    /// and scaled to `size` when it differs.
    pub fn load(
        cache: &Cache,
        metrics: &[Box<dyn Metric>],
        size: Vec<usize>,
        perturbed: bool,
    ) -> Result<MetricData, EvalError> {
        for metric in metrics {
            check_needs(
                metric.as_ref(),
                &format!("`{}`", cache.spec),
                |t| cache.has(t),
                perturbed,
            )?;
        }
        let k = cache.dims()?.k;
        let needs_head = metrics.iter().any(|m| m.needs().contains(&Need::HeadWeight));
        let head = if needs_head {
            Some(load_head(cache, k)?)
        } else {
            None
        };
        let classes = head.as_ref().map(|(_, bias)| bias.len());
        let targets = load_targets(cache, classes)?;
        let mut boxes = load_boxes(cache)?;
        if let (Some(boxes), Some(input)) = (&mut boxes, cache.image_size()?) {
            scale_boxes(boxes, &input, &size);
        }
        let images = load_images(cache, &size)?;
        let predicted = whole(cache, "logits", |shard, n, shape| match shape {
            [m, c] if *m == n && *c > 0 => Ok(()),
            _ => Err(bad(
                shard,
                "logits",
                format!("has shape {shape:?}; expected [{n},C]"),
            )),
        })?
        .map(|(shape, values)| {
            values
                .chunks(shape[1].max(1))
                .map(|row| {
                    (0..row.len())
                        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                        .unwrap_or(0)
                })
                .collect()
        });
        let labels = whole(cache, "label", |shard, n, shape| {
            per_image(shard, "label", n, shape)
        })?
        .map(|(_, v)| v.iter().map(|&x| x as i64).collect());
        Ok(MetricData {
            boxes,
            head,
            targets,
            size,
            images,
            predicted,
            labels,
        })
    }

    /// Image `i`'s `[3,H,W]` pixels at the map size, when the cache has them.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let per = 3 * self.size.iter().product::<usize>();
        self.images
            .as_ref()
            .and_then(|all| all.get(i * per..(i + 1) * per))
    }

    /// What image `i` is about, for a report: `target 3 · predicted 3 · label 5`, as far as the
    /// cache says.
    pub fn caption(&self, i: usize) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(t) = self.targets.as_ref().and_then(|t| t.get(i)) {
            parts.push(format!("target {t}"));
        }
        if let Some(p) = self.predicted.as_ref().and_then(|p| p.get(i)) {
            parts.push(format!("predicted {p}"));
        }
        if let Some(l) = self.labels.as_ref().and_then(|l| l.get(i)) {
            parts.push(format!("label {l}"));
        }
        (!parts.is_empty()).then(|| parts.join(" · "))
    }

    pub fn boxes_of(&self, i: usize) -> &[BBox] {
        self.boxes
            .as_ref()
            .and_then(|b| b.get(i))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Boxes in `from` (`[H,W]`) pixel coordinates moved to `to`.
fn scale_boxes(boxes: &mut [Vec<BBox>], from: &[usize], to: &[usize]) {
    let (&[fh, fw], &[th, tw]) = (from, to) else {
        return;
    };
    if (fh, fw) == (th, tw) || fh == 0 || fw == 0 {
        return;
    }
    let (sy, sx) = (th as f32 / fh as f32, tw as f32 / fw as f32);
    for b in boxes.iter_mut().flatten() {
        *b = BBox {
            x0: b.x0 * sx,
            y0: b.y0 * sy,
            x1: b.x1 * sx,
            y1: b.y1 * sy,
        };
    }
}

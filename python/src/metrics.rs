//! The cache metrics of `camc eval` on maps computed in Python, and `camc eval --report`'s
//! page for `camc.torch.evaluate` (camc/torch/_evaluate.py): one implementation of each metric
//! and of the report, shared with the CLI.

use crate::{error, Kind};
use camc_analysis::metrics::{
    metric_by_name, BBox, Better, ImageInput, Map, Metric, MetricValue, Need, IMAGE_METRIC_NAMES,
    METRIC_NAMES,
};
use camc_analysis::overlay::{overlay_file_name, write_overlay, write_photo, OverlayInput, OverlayStyle};
use camc_analysis::report::{write_report, GridRow, MetricRow, Report};
use numpy::{PyReadonlyArray3, PyReadonlyArray4, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// One row of `camc eval --json` without its program: name, value, better, images, skipped.
type ValueRow = (String, Option<f64>, String, usize, usize);

/// Boxes per image, `x0, y0, x1, y1` in input pixels (`x1`, `y1` exclusive).
type Boxes = Vec<Vec<[f32; 4]>>;

/// A cache metric computable from maps (and boxes) alone, or why not.
fn cache_metric(name: &str, has_boxes: bool) -> Result<Box<dyn Metric>, String> {
    let metric = metric_by_name(name).map_err(|e| e.to_string())?;
    for need in metric.needs() {
        match need {
            Need::Boxes if has_boxes => {}
            Need::Boxes => {
                return Err(format!(
                    "metric `{name}` needs ground-truth boxes: pass boxes=[[x0, y0, x1, y1], ...] per image"
                ))
            }
            Need::Perturbed => {
                return Err(format!(
                    "metric `{name}` compares with maps of perturbed inputs, which camc.torch.evaluate \
                     does not compute; `coherency` re-runs the method on the masked input"
                ))
            }
            _ => {
                return Err(format!(
                    "metric `{name}` reads a cache's activations and linear head; with the model at \
                     hand, use the image-level `{}`",
                    name.trim_end_matches("_feat")
                ))
            }
        }
    }
    Ok(metric)
}

fn bboxes(boxes: &[[f32; 4]]) -> Vec<BBox> {
    boxes
        .iter()
        .map(|&[x0, y0, x1, y1]| BBox { x0, y0, x1, y1 })
        .collect()
}

/// Accumulators of cache metrics fed with maps computed in Python, batch after batch.
#[pyclass(module = "camc._camc")]
pub struct CacheMetrics {
    metrics: Vec<Box<dyn Metric>>,
    has_boxes: bool,
}

#[pymethods]
impl CacheMetrics {
    /// Checks that maps (and boxes, when `has_boxes`) can feed every metric of `names`.
    #[new]
    fn new(py: Python<'_>, names: Vec<String>, has_boxes: bool) -> PyResult<CacheMetrics> {
        let metrics = names
            .iter()
            .map(|name| cache_metric(name, has_boxes))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|m| error(py, Kind::Input, m))?;
        Ok(CacheMetrics { metrics, has_boxes })
    }

    /// Scores maps `[n, H, W]` (values in [0, 1]) with `boxes` (one list per image), adds
    /// them to the accumulators and returns, per row of [`CacheMetrics::rows`] (`loc` has two:
    /// `loc`, `loc_acc`), each image's value (`None`: skipped, e.g. an image without a box).
    #[pyo3(signature = (maps, boxes=None))]
    fn add(
        &mut self,
        py: Python<'_>,
        maps: PyReadonlyArray3<'_, f32>,
        boxes: Option<Boxes>,
    ) -> PyResult<Vec<Vec<Option<f64>>>> {
        let &[n, h, w] = maps.shape() else {
            return Err(error(py, Kind::Input, "maps must be [n, H, W]"));
        };
        let data = maps
            .as_slice()
            .map_err(|_| error(py, Kind::Input, "maps must be C-contiguous float32"))?;
        match &boxes {
            Some(b) if b.len() != n => {
                return Err(error(
                    py,
                    Kind::Input,
                    format!("{} lists of boxes for {n} images; give one per image", b.len()),
                ))
            }
            None if self.has_boxes => {
                return Err(error(py, Kind::Input, "the boxes of this batch are missing"))
            }
            _ => {}
        }
        let boxes: Option<Vec<Vec<BBox>>> = boxes.map(|b| b.iter().map(|one| bboxes(one)).collect());
        let metrics = &self.metrics;
        let scored = py.detach(|| -> Result<Vec<Vec<Option<f64>>>, String> {
            let per_image: Vec<Result<Vec<Option<f64>>, String>> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let map = Map::new(&data[i * h * w..(i + 1) * h * w], h, w)
                        .map_err(|e| format!("map of image {i}: {e}"))?;
                    let mut input = ImageInput::new(map);
                    input.boxes = boxes.as_ref().map(|b| b[i].as_slice());
                    metrics
                        .iter()
                        .map(|m| m.score(&input).map_err(|e| format!("image {i}: {e}")))
                        .collect()
                })
                .collect();
            per_image.into_iter().collect()
        });
        let scored = scored.map_err(|m| error(py, Kind::Input, m))?;
        let mut columns: Vec<Vec<Option<f64>>> = Vec::new();
        for (m, metric) in self.metrics.iter_mut().enumerate() {
            let first = columns.len();
            for image in &scored {
                metric.add_score(image[m]);
                // One image's values in the rows' units: a fresh accumulator's finish.
                let mut alone =
                    metric_by_name(metric.name()).map_err(|e| error(py, Kind::Input, e.to_string()))?;
                alone.add_score(image[m]);
                for (r, value) in alone.finish().iter().enumerate() {
                    if columns.len() <= first + r {
                        columns.push(Vec::with_capacity(n));
                    }
                    columns[first + r].push(value.value);
                }
            }
            if scored.is_empty() {
                columns.extend(metric.finish().iter().map(|_| Vec::new()));
            }
        }
        Ok(columns)
    }

    /// How many rows each metric gives, in order (`loc`: 2, `loc` and `loc_acc`).
    fn row_counts(&self) -> Vec<usize> {
        self.metrics.iter().map(|m| m.finish().len()).collect()
    }

    /// The rows so far: `(name, value, better, images, skipped)`, as `camc eval --json`.
    fn rows(&self) -> Vec<ValueRow> {
        self.metrics
            .iter()
            .flat_map(|m| m.finish())
            .map(|v| {
                (
                    v.name.to_string(),
                    v.value,
                    v.better.as_str().to_string(),
                    v.images,
                    v.skipped,
                )
            })
            .collect()
    }
}

/// A metric name as the report holds it (a `'static` name of camc's metrics).
fn known_name(name: &str) -> Option<&'static str> {
    METRIC_NAMES
        .iter()
        .chain(IMAGE_METRIC_NAMES)
        .chain(&["loc_acc"])
        .find(|known| **known == name)
        .copied()
}

fn metric_rows(rows: Vec<(String, Vec<ValueRow>)>) -> Result<Vec<MetricRow>, String> {
    rows.into_iter()
        .map(|(program, values)| {
            let values = values
                .into_iter()
                .map(|(name, value, better, images, skipped)| {
                    Ok(MetricValue {
                        name: known_name(&name).ok_or_else(|| format!("unknown metric `{name}`"))?,
                        value,
                        better: if better == "lower" {
                            Better::Lower
                        } else {
                            Better::Higher
                        },
                        images,
                        skipped,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(MetricRow { program, values })
        })
        .collect()
}

/// What the report shows about the images: pixels `[n, 3, H, W]` uint8, boxes, and per image
/// its caption and, per method, the hover text of its overlay.
struct Images<'a> {
    pixels: Option<&'a [u8]>,
    boxes: Option<Vec<Vec<BBox>>>,
    captions: Vec<Option<String>>,
    hovers: Vec<Vec<String>>,
}

/// Writes `dir/input/NNNNN.png`, `dir/METHOD/NNNNN.png` and the grid's rows.
fn grid(
    dir: &Path,
    methods: &[String],
    maps: &[f32],
    n: usize,
    h: usize,
    w: usize,
    images: &Images,
) -> Result<Vec<GridRow>, String> {
    let style = OverlayStyle::default();
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let pixels = images.pixels.map(|p| &p[i * 3 * h * w..(i + 1) * 3 * h * w]);
        let file = overlay_file_name(i);
        let input = match pixels {
            Some(pixels) => {
                std::fs::create_dir_all(dir.join("input")).map_err(|e| e.to_string())?;
                write_photo(&dir.join("input").join(&file), pixels, h, w).map_err(|e| e.to_string())?;
                Some(format!("input/{file}"))
            }
            None => None,
        };
        let mut cells = Vec::with_capacity(methods.len());
        for (m, method) in methods.iter().enumerate() {
            let folder = dir.join(method);
            std::fs::create_dir_all(&folder)
                .map_err(|e| format!("cannot create `{}`: {e}", folder.display()))?;
            let overlay = OverlayInput {
                map: &maps[(m * n + i) * h * w..(m * n + i + 1) * h * w],
                h,
                w,
                image: pixels,
                boxes: images.boxes.as_ref().map_or(&[][..], |b| b[i].as_slice()),
            };
            write_overlay(&folder.join(&file), &overlay, &style).map_err(|e| e.to_string())?;
            cells.push(Some(format!("{method}/{file}")));
        }
        rows.push(GridRow {
            label: format!("image {i}"),
            caption: images.captions.get(i).cloned().flatten(),
            input,
            cells,
            hovers: images.hovers.get(i).cloned().unwrap_or_default(),
        });
    }
    Ok(rows)
}

/// Writes `camc eval --report`'s page into `dir` (which must exist): the metric table
/// (`rows`: per program its `(name, value, better, images, skipped)` values), and a grid of
/// overlays of `maps` `[methods, n, H, W]` over `images` `[n, 3, H, W]` uint8 with `boxes`,
/// each image captioned and each overlay hovered with its metrics. Returns the page's path.
#[pyfunction]
#[pyo3(signature = (dir, title, provenance, methods, maps, rows, images=None, boxes=None, captions=Vec::new(), hovers=Vec::new()))]
#[allow(clippy::too_many_arguments)]
pub fn write_eval_report(
    py: Python<'_>,
    dir: PathBuf,
    title: String,
    provenance: Vec<(String, String)>,
    methods: Vec<String>,
    maps: PyReadonlyArray4<'_, f32>,
    rows: Vec<(String, Vec<ValueRow>)>,
    images: Option<PyReadonlyArray4<'_, u8>>,
    boxes: Option<Boxes>,
    captions: Vec<Option<String>>,
    hovers: Vec<Vec<String>>,
) -> PyResult<String> {
    let &[m, n, h, w] = maps.shape() else {
        return Err(error(py, Kind::Input, "maps must be [methods, n, H, W]"));
    };
    if m != methods.len() {
        return Err(error(
            py,
            Kind::Input,
            format!("{m} maps for {} methods", methods.len()),
        ));
    }
    if let Some(bad) = methods.iter().find(|name| {
        name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') || *name == "input"
    }) {
        return Err(error(
            py,
            Kind::Input,
            format!("method name `{bad}` cannot name a folder of the report"),
        ));
    }
    let maps = maps
        .as_slice()
        .map_err(|_| error(py, Kind::Input, "maps must be C-contiguous float32"))?;
    let pixels = match &images {
        Some(array) => {
            if array.shape() != [n, 3, h, w] {
                return Err(error(
                    py,
                    Kind::Input,
                    format!(
                        "images has shape {:?}; expected [{n}, 3, {h}, {w}] uint8",
                        array.shape()
                    ),
                ));
            }
            Some(
                array
                    .as_slice()
                    .map_err(|_| error(py, Kind::Input, "images must be C-contiguous uint8"))?,
            )
        }
        None => None,
    };
    if boxes.as_ref().is_some_and(|b| b.len() != n) {
        return Err(error(
            py,
            Kind::Input,
            format!("boxes must hold one list per image ({n})"),
        ));
    }
    let images = Images {
        pixels,
        boxes: boxes.map(|b| b.iter().map(|one| bboxes(one)).collect()),
        captions,
        hovers,
    };
    let metrics = metric_rows(rows).map_err(|m| error(py, Kind::Input, m))?;
    let page = py.detach(|| -> Result<PathBuf, String> {
        let grid = grid(&dir, &methods, maps, n, h, w, &images)?;
        let report = Report {
            title,
            provenance,
            skipped: Vec::new(),
            colormap: Some(OverlayStyle::default().colormap),
            methods,
            grid,
            metrics,
        };
        write_report(&dir, &report).map_err(|e| e.to_string())
    });
    let page = page.map_err(|m| error(py, Kind::Input, format!("report: {m}")))?;
    Ok(page.display().to_string())
}

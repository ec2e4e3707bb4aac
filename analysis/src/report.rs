//! The HTML report: one self-contained offline page (inline CSS, no script, no external
//! resource) with a grid of overlays (images × methods, PNGs referenced by relative path in the
//! report's folder) and the metric table with each metric's direction. See `docs/metrics.md`.

use crate::metrics::{Better, MetricValue};
use crate::overlay::Colormap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

/// One row of the overlay grid: an image and, per method (in [`Report::methods`] order), the
/// relative path of its overlay PNG (`None`: no overlay, an empty cell).
#[derive(Clone, Debug, Default)]
pub struct GridRow {
    pub label: String,
    /// What the image shows: its target class, the model's prediction, ...
    pub caption: Option<String>,
    /// The input image alone (relative path of a PNG), the grid's first column.
    pub input: Option<String>,
    pub cells: Vec<Option<String>>,
    /// Per cell, the image's metric values for that method, shown on hover (may be empty).
    pub hovers: Vec<String>,
}

/// One row of the metric table: a program and its values (as [`crate::metrics::Metric::finish`]
/// gives them, all metrics concatenated).
#[derive(Clone, Debug, Default)]
pub struct MetricRow {
    pub program: String,
    pub values: Vec<MetricValue>,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub title: String,
    /// Where the numbers come from: cache, model, layer, camc version, date.
    pub provenance: Vec<(String, String)>,
    /// Methods not evaluated, and why.
    pub skipped: Vec<(String, String)>,
    /// The overlays' colormap, drawn as a colour bar above the grid.
    pub colormap: Option<Colormap>,
    /// Column heads of the grid.
    pub methods: Vec<String>,
    pub grid: Vec<GridRow>,
    pub metrics: Vec<MetricRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report: image path `{0}` must be relative, inside the report's folder")]
    Path(String),
    #[error("report: grid row `{label}` has {got} cells for {expected} methods")]
    Cells {
        label: String,
        expected: usize,
        got: usize,
    },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The file [`write_report`] writes in its folder.
pub const REPORT_FILE: &str = "report.html";

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:2em}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:center}\
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}\
td.best{font-weight:bold;background:#eaf6ea}\
img{display:block;width:160px;height:auto;image-rendering:pixelated}\
.legend,.provenance{color:#555;font-size:90%}.caption{font-weight:normal;font-size:85%;color:#555}\
.colorbar{width:320px;height:14px;border:1px solid #999}.bar{margin:0 0 1em 0}\
.bar span{display:inline-block;width:160px;font-size:85%;color:#555}.bar span+span{text-align:right}";

/// Renders the page.
pub fn render_report(report: &Report) -> Result<String, ReportError> {
    let mut html = String::new();
    let title = escape(&report.title);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    if !report.provenance.is_empty() {
        html.push_str("<p class=\"provenance\">");
        let items: Vec<String> = report
            .provenance
            .iter()
            .map(|(key, value)| format!("{}: <b>{}</b>", escape(key), escape(value)))
            .collect();
        html.push_str(&items.join(" · "));
        html.push_str("</p>\n");
    }
    if !report.metrics.is_empty() {
        html.push_str("<h2>Metrics</h2>\n");
        metric_table(&mut html, &report.metrics);
    }
    if !report.skipped.is_empty() {
        html.push_str("<h2>Skipped</h2>\n<ul class=\"skipped\">\n");
        for (method, why) in &report.skipped {
            let _ = writeln!(html, "<li><b>{}</b>: {}</li>", escape(method), escape(why));
        }
        html.push_str("</ul>\n");
    }
    if !report.grid.is_empty() {
        html.push_str("<h2>Overlays</h2>\n");
        if let Some(colormap) = report.colormap {
            colorbar(&mut html, colormap);
        }
        grid_table(&mut html, report)?;
    }
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

/// Writes `dir/report.html` (the overlays are expected in `dir` at their relative paths) and
/// returns its path.
pub fn write_report(dir: &Path, report: &Report) -> Result<PathBuf, ReportError> {
    let html = render_report(report)?;
    let path = dir.join(REPORT_FILE);
    std::fs::write(&path, html).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// The metric names in order of first appearance, with their direction.
fn columns(rows: &[MetricRow]) -> Vec<(&'static str, Better)> {
    let mut cols: Vec<(&'static str, Better)> = Vec::new();
    for v in rows.iter().flat_map(|r| &r.values) {
        if !cols.iter().any(|(n, _)| *n == v.name) {
            cols.push((v.name, v.better));
        }
    }
    cols
}

fn metric_table(html: &mut String, rows: &[MetricRow]) {
    let cols = columns(rows);
    html.push_str("<table class=\"metrics\">\n<tr><th>program</th>");
    for (name, better) in &cols {
        let (arrow, word) = arrow(*better);
        let _ = write!(
            html,
            "<th title=\"{word} is better\">{} {arrow}</th>",
            escape(name)
        );
    }
    html.push_str("</tr>\n");
    let best: Vec<Option<f64>> = cols
        .iter()
        .map(|(name, better)| {
            let values = rows.iter().flat_map(|r| &r.values).filter(|v| v.name == *name);
            let values = values.filter_map(|v| v.value);
            match better {
                Better::Higher => values.reduce(f64::max),
                Better::Lower => values.reduce(f64::min),
            }
        })
        .collect();
    for row in rows {
        let _ = write!(html, "<tr><th>{}</th>", escape(&row.program));
        for ((name, _), best) in cols.iter().zip(&best) {
            match row.values.iter().find(|v| v.name == *name) {
                Some(v) => {
                    let holders = rows
                        .iter()
                        .flat_map(|r| &r.values)
                        .filter(|o| o.name == *name && o.value.is_some() && o.value == *best)
                        .count();
                    let class = if v.value.is_some() && v.value == *best && holders == 1 {
                        "num best"
                    } else {
                        "num"
                    };
                    let text = v.value.map_or("n/a".to_string(), |x| format!("{x:.4}"));
                    let _ = write!(
                        html,
                        "<td class=\"{class}\" title=\"{} images, {} skipped\">{text}</td>",
                        v.images, v.skipped
                    );
                }
                None => html.push_str("<td></td>"),
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str(
        "</table>\n<p class=\"legend\">↑ higher is better, ↓ lower is better; \
                   the best value of each column is in bold when one program alone has it; \
                   hover a value for its number of images.</p>\n",
    );
}

fn arrow(better: Better) -> (&'static str, &'static str) {
    match better {
        Better::Higher => ("↑", "higher"),
        Better::Lower => ("↓", "lower"),
    }
}

/// The colormap from 0 to 1 as a CSS gradient, with its ends labelled.
fn colorbar(html: &mut String, colormap: Colormap) {
    let stops: Vec<String> = (0..=10)
        .map(|i| {
            let [r, g, b] = colormap.color(i as f32 / 10.0);
            format!("rgb({r},{g},{b})")
        })
        .collect();
    let _ = writeln!(
        html,
        "<div class=\"bar\"><div class=\"colorbar\" style=\"background:linear-gradient(to right,{})\"></div>\
         <span>0 (low)</span><span>1 (high)</span></div>",
        stops.join(",")
    );
}

fn grid_table(html: &mut String, report: &Report) -> Result<(), ReportError> {
    let with_input = report.grid.iter().any(|r| r.input.is_some());
    html.push_str("<table class=\"grid\">\n<tr><th>image</th>");
    if with_input {
        html.push_str("<th>input</th>");
    }
    for m in &report.methods {
        let _ = write!(html, "<th>{}</th>", escape(m));
    }
    html.push_str("</tr>\n");
    for row in &report.grid {
        if row.cells.len() != report.methods.len() {
            return Err(ReportError::Cells {
                label: row.label.clone(),
                expected: report.methods.len(),
                got: row.cells.len(),
            });
        }
        let caption = row
            .caption
            .as_ref()
            .map(|c| format!("<br><span class=\"caption\">{}</span>", escape(c)))
            .unwrap_or_default();
        let _ = write!(html, "<tr><th>{}{caption}</th>", escape(&row.label));
        if with_input {
            match &row.input {
                Some(path) => {
                    let src = relative_url(path)?;
                    let alt = escape(&format!("{} — input", row.label));
                    let _ = write!(
                        html,
                        "<td><img src=\"{src}\" alt=\"{alt}\" loading=\"lazy\"></td>"
                    );
                }
                None => html.push_str("<td></td>"),
            }
        }
        for (i, (cell, method)) in row.cells.iter().zip(&report.methods).enumerate() {
            match cell {
                Some(path) => {
                    let src = relative_url(path)?;
                    let alt = escape(&format!("{} — {}", row.label, method));
                    let title = row
                        .hovers
                        .get(i)
                        .filter(|h| !h.is_empty())
                        .map(|h| format!(" title=\"{}\"", escape(h)))
                        .unwrap_or_default();
                    let _ = write!(
                        html,
                        "<td{title}><img src=\"{src}\" alt=\"{alt}\" loading=\"lazy\"></td>"
                    );
                }
                None => html.push_str("<td></td>"),
            }
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    Ok(())
}

/// A relative path inside the report's folder as a URL: `/`-separated, percent-encoded.
fn relative_url(path: &str) -> Result<String, ReportError> {
    let p = Path::new(path);
    let inside = !path.is_empty()
        && !path.contains('\\')
        && !path.contains(':')
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !inside {
        return Err(ReportError::Path(path.to_string()));
    }
    let mut url = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            url.push(char::from(b));
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
    Ok(url)
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

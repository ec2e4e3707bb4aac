//! The HTML report holds the metric table and the overlay references.

use camc_analysis::metrics::{Better, MetricValue};
use camc_analysis::report::*;

fn value(name: &'static str, value: Option<f64>, better: Better) -> MetricValue {
    MetricValue {
        name,
        value,
        better,
        images: 10,
        skipped: 2,
    }
}

fn sample() -> Report {
    Report {
        title: "camc eval <test>".into(),
        methods: vec!["gradcam".into(), "my cam".into()],
        grid: vec![
            GridRow {
                label: "image 0".into(),
                cells: vec![Some("gradcam/00000.png".into()), Some("my cam/00000.png".into())],
                ..Default::default()
            },
            GridRow {
                label: "image 1".into(),
                cells: vec![Some("gradcam/00001.png".into()), None],
                ..Default::default()
            },
        ],
        metrics: vec![
            MetricRow {
                program: "gradcam".into(),
                values: vec![
                    value("loc", Some(0.5), Better::Higher),
                    value("loc_acc", Some(0.25), Better::Higher),
                    value("ad_feat", Some(31.41592), Better::Lower),
                ],
            },
            MetricRow {
                program: "<my cam>".into(),
                values: vec![
                    value("loc", Some(0.625), Better::Higher),
                    value("ad_feat", None, Better::Lower),
                ],
            },
        ],
        ..Default::default()
    }
}

#[test]
fn report_has_the_table_the_directions_and_the_images() {
    let html = render_report(&sample()).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for needle in [
        "<td class=\"num\" title=\"10 images, 2 skipped\">0.5000</td>",
        "<td class=\"num best\" title=\"10 images, 2 skipped\">0.6250</td>",
        "<td class=\"num best\" title=\"10 images, 2 skipped\">0.2500</td>",
        "<td class=\"num best\" title=\"10 images, 2 skipped\">31.4159</td>",
        ">n/a</td>",
        "<th title=\"higher is better\">loc ↑</th>",
        "<th title=\"lower is better\">ad_feat ↓</th>",
        "<img src=\"gradcam/00000.png\"",
        "<img src=\"my%20cam/00000.png\"",
        "<img src=\"gradcam/00001.png\"",
        "&lt;my cam&gt;",
        "<title>camc eval &lt;test&gt;</title>",
    ] {
        assert!(html.contains(needle), "missing {needle:?} in\n{html}");
    }
    // The row without loc_acc has an empty cell; nothing is fetched from outside.
    assert_eq!(html.matches("<img ").count(), 3);
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
}

#[test]
fn report_is_written_to_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_report(dir.path(), &sample()).unwrap();
    assert_eq!(path, dir.path().join(REPORT_FILE));
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains("31.4159"));
}

#[test]
fn report_rejects_paths_outside_its_folder_and_ragged_rows() {
    for bad in [
        "../x.png",
        "/tmp/x.png",
        "a/../../x.png",
        "C:\\x.png",
        "https://e.invalid/x.png",
        "",
    ] {
        let mut r = sample();
        r.grid[0].cells[0] = Some(bad.into());
        let err = render_report(&r).unwrap_err();
        assert!(matches!(err, ReportError::Path(_)), "{bad}: {err}");
    }
    let mut r = sample();
    r.grid[1].cells.pop();
    let err = render_report(&r).unwrap_err().to_string();
    assert_eq!(err, "report: grid row `image 1` has 1 cells for 2 methods");
    assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

#[test]
fn report_has_provenance_inputs_captions_a_colorbar_scores_on_hover_and_skipped_methods() {
    let mut r = sample();
    r.provenance = vec![
        ("cache".into(), "demo.safetensors".into()),
        ("layer".into(), "features.relu3".into()),
    ];
    r.skipped = vec![("scorecam".into(), "cache has no `score`".into())];
    r.colormap = Some(camc_analysis::overlay::Colormap::Turbo);
    r.grid[0].input = Some("input/00000.png".into());
    r.grid[0].caption = Some("target 3 · predicted 5".into());
    r.grid[0].hovers = vec!["loc 0.5000".into(), "loc 0.2500".into()];
    let html = render_report(&r).unwrap();
    for needle in [
        "cache: <b>demo.safetensors</b> · layer: <b>features.relu3</b>",
        "<li><b>scorecam</b>: cache has no `score`</li>",
        "<th>image</th><th>input</th>",
        "<img src=\"input/00000.png\"",
        "<span class=\"caption\">target 3 · predicted 5</span>",
        "<td title=\"loc 0.5000\"><img src=\"gradcam/00000.png\"",
        "class=\"colorbar\" style=\"background:linear-gradient(to right,rgb(",
        "width:160px",
    ] {
        assert!(html.contains(needle), "missing {needle:?} in\n{html}");
    }
    // The colour bar runs from the colormap's colour of 0 to that of 1.
    let [r0, g0, b0] = camc_analysis::overlay::Colormap::Turbo.color(0.0);
    assert!(html.contains(&format!("to right,rgb({r0},{g0},{b0}),")));
}

#[test]
fn a_best_value_shared_by_two_programs_is_not_bold() {
    let mut r = sample();
    r.metrics[1].values[0] = value("loc", Some(0.5), Better::Higher);
    let html = render_report(&r).unwrap();
    assert!(
        !html.contains("num best\" title=\"10 images, 2 skipped\">0.5000"),
        "a tie is not a best:\n{html}"
    );
    // A column with a single best keeps its bold.
    assert!(html.contains("num best\" title=\"10 images, 2 skipped\">31.4159"));
}

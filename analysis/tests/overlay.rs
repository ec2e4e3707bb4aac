//! Overlays: written as PNG, read back, checked pixel by pixel.

use camc_analysis::metrics::BBox;
use camc_analysis::overlay::*;

const H: usize = 6;
const W: usize = 8;

/// Map 0 everywhere but 1.0 at (y5, x7) and 0.5 at (y0, x7).
fn heatmap() -> Vec<f32> {
    let mut map = vec![0f32; H * W];
    map[5 * W + 7] = 1.0;
    map[7] = 0.5;
    map
}

/// `[3,H,W]`: R = 100, G = 50, B = 200 everywhere.
fn image() -> Vec<u8> {
    [100u8, 50, 200]
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, H * W))
        .collect()
}

fn turbo(t: f64) -> [u8; 3] {
    let c = colorous::TURBO.eval_continuous(t);
    [c.r, c.g, c.b]
}

fn blend(heat: [u8; 3], img: [u8; 3]) -> [u8; 3] {
    std::array::from_fn(|c| ((f32::from(heat[c]) + f32::from(img[c])) / 2.0).round() as u8)
}

fn pixel(img: &image::RgbImage, y: u32, x: u32) -> [u8; 3] {
    img.get_pixel(x, y).0
}

#[test]
fn overlay_png_round_trip_blends_the_colormap_and_draws_boxes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(overlay_file_name(3));
    assert!(path.ends_with("00003.png"));
    let (map, img) = (heatmap(), image());
    let boxes = [BBox::new(1.0, 1.0, 6.0, 5.0)];
    let input = OverlayInput {
        map: &map,
        h: H,
        w: W,
        image: Some(&img),
        boxes: &boxes,
    };
    let style = OverlayStyle {
        box_width: 1,
        ..OverlayStyle::default()
    };
    write_overlay(&path, &input, &style).unwrap();

    let back = image::open(&path).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), (W as u32, H as u32));
    let (lo, hi) = (turbo(0.0), turbo(1.0));
    assert_ne!(lo, hi);
    assert_eq!(pixel(&back, 0, 0), blend(lo, [100, 50, 200]));
    assert_eq!(pixel(&back, 5, 7), blend(hi, [100, 50, 200]));
    assert_eq!(pixel(&back, 0, 7), blend(turbo(0.5), [100, 50, 200]));
    // Box pixels x 1..6, y 1..5: its 1-px outline is green, its inside is not.
    for (y, x) in [(1, 1), (1, 5), (4, 1), (4, 5), (2, 1), (1, 3)] {
        assert_eq!(pixel(&back, y, x), [0, 255, 0], "({y},{x})");
    }
    for (y, x) in [(2, 2), (3, 4), (5, 6), (0, 1)] {
        assert_eq!(pixel(&back, y, x), blend(lo, [100, 50, 200]), "({y},{x})");
    }
}

#[test]
fn overlay_without_image_is_the_colormap_and_boxes_are_clipped() {
    let map = heatmap();
    // A box partly outside the image: clipped to x 4..8, y 3..6; 2-px outline inside it.
    let boxes = [BBox::new(4.0, 3.0, 50.0, 50.0)];
    let input = OverlayInput {
        map: &map,
        h: H,
        w: W,
        image: None,
        boxes: &boxes,
    };
    let style = OverlayStyle {
        colormap: Colormap::Viridis,
        box_color: [255, 0, 255],
        ..OverlayStyle::default()
    };
    let img = render_overlay(&input, &style).unwrap();
    let v0 = colorous::VIRIDIS.eval_continuous(0.0);
    assert_eq!(pixel(&img, 0, 0), [v0.r, v0.g, v0.b]);
    let v5 = colorous::VIRIDIS.eval_continuous(0.5);
    assert_eq!(pixel(&img, 0, 7), [v5.r, v5.g, v5.b]);
    for (y, x) in [(3, 4), (4, 5), (5, 7), (3, 7)] {
        assert_eq!(pixel(&img, y, x), [255, 0, 255], "({y},{x})");
    }
    assert_eq!(pixel(&img, 2, 4), [v0.r, v0.g, v0.b]);
}

#[test]
fn overlay_rejects_bad_input_without_panicking() {
    let (map, img) = (heatmap(), image());
    let style = OverlayStyle::default();
    let short = OverlayInput {
        map: &map[1..],
        h: H,
        w: W,
        image: None,
        boxes: &[],
    };
    assert!(matches!(
        render_overlay(&short, &style),
        Err(OverlayError::Shape { .. })
    ));
    let bad_image = OverlayInput {
        map: &map,
        h: H,
        w: W,
        image: Some(&img[1..]),
        boxes: &[],
    };
    let err = render_overlay(&bad_image, &style).unwrap_err();
    assert!(err.to_string().contains("image [3,H,W]"), "{err}");
    let empty = OverlayInput {
        map: &[],
        h: 0,
        w: 0,
        image: None,
        boxes: &[],
    };
    assert!(render_overlay(&empty, &style).is_err());
    let nan_box = [BBox::new(f32::NAN, 0.0, 1.0, 1.0)];
    let with_nan = OverlayInput {
        map: &map,
        h: H,
        w: W,
        image: None,
        boxes: &nan_box,
    };
    assert!(matches!(
        render_overlay(&with_nan, &style),
        Err(OverlayError::Box(_))
    ));
    // Out-of-range and NaN map values are clamped, not a crash.
    let wild = vec![f32::NAN, -3.0, 7.0, f32::INFINITY, 0.0, 0.0];
    let input = OverlayInput {
        map: &wild,
        h: 2,
        w: 3,
        image: None,
        boxes: &[],
    };
    let out = render_overlay(&input, &style).unwrap();
    assert_eq!(pixel(&out, 0, 0), turbo(0.0));
    assert_eq!(pixel(&out, 0, 2), turbo(1.0));
    let missing_dir = std::path::Path::new("/nonexistent-camc-dir/x.png");
    let ok = OverlayInput {
        map: &map,
        h: H,
        w: W,
        image: None,
        boxes: &[],
    };
    let err = write_overlay(missing_dir, &ok, &style).unwrap_err();
    assert!(err.to_string().contains("/nonexistent-camc-dir/x.png"), "{err}");
}

#[test]
fn colormaps_by_name() {
    for name in Colormap::NAMES {
        assert!(Colormap::by_name(name).is_some(), "{name}");
    }
    assert_eq!(Colormap::by_name("jet"), None);
    assert_eq!(Colormap::default(), Colormap::Turbo);
}

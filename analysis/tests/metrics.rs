//! Metrics against hand-computed values on tiny inputs (docs/metrics.md).

use camc_analysis::metrics::*;

fn map(h: usize, w: usize, data: &[f32]) -> Map<'_> {
    Map::new(data, h, w).unwrap()
}

/// Adds one image with boxes to a metric.
fn add_boxed(m: &mut dyn Metric, data: &[f32], boxes: &[BBox]) {
    let mut input = ImageInput::new(map(4, 4, data));
    input.boxes = Some(boxes);
    m.add(&input).unwrap();
}

fn only(m: &dyn Metric) -> MetricValue {
    let mut values = m.finish();
    assert_eq!(values.len(), 1);
    values.remove(0)
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[rustfmt::skip]
const COMPONENT: [f32; 16] = [
    0.0, 0.0, 0.0, 0.0,
    0.0, 1.0, 0.5, 0.0,
    0.0, 0.4, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.1, // 0.1 < 0.15·max: dropped
];

#[test]
fn loc_boxes_the_component_and_scores_iou_and_accuracy() {
    let m = map(4, 4, &COMPONENT);
    // Kept: (y1,x1), (y1,x2), (y2,x1) → box x 1..3, y 1..3.
    let pred = largest_component_box(&m, LOC_THRESHOLD).unwrap();
    assert_eq!(
        pred,
        PixelRange {
            x0: 1,
            y0: 1,
            x1: 3,
            y1: 3
        }
    );

    let mut loc = Loc::default();
    add_boxed(&mut loc, &COMPONENT, &[BBox::new(1.0, 1.0, 3.0, 3.0)]); // IoU 1
                                                                       // Box 0..2 × 0..2: intersection 1 pixel, union 4 + 4 − 1 = 7 → 1/7. Best over boxes: the
                                                                       // second box (x 3..4, y 3..4) does not touch the prediction.
    add_boxed(
        &mut loc,
        &COMPONENT,
        &[BBox::new(0.0, 0.0, 2.0, 2.0), BBox::new(3.0, 3.0, 9.0, 9.0)],
    );
    let values = loc.finish();
    assert_eq!(values.len(), 2);
    assert_eq!(values[0].name, "loc");
    close(values[0].value.unwrap(), (1.0 + 1.0 / 7.0) / 2.0);
    assert_eq!(values[1].name, "loc_acc");
    close(values[1].value.unwrap(), 0.5);
    assert_eq!((values[0].images, values[0].skipped), (2, 0));
    assert_eq!(values[0].better, Better::Higher);
}

#[test]
fn loc_is_eight_connected() {
    #[rustfmt::skip]
    let data = [
        0.2, 0.0, 0.0, 0.0,
        0.0, 0.2, 0.0, 0.0,
        0.0, 0.0, 0.2, 0.0,
        1.0, 0.0, 0.0, 0.0,
    ];
    // The diagonal is one component of 3 pixels (4-connectivity would make it three of 1).
    let pred = largest_component_box(&map(4, 4, &data), LOC_THRESHOLD).unwrap();
    assert_eq!(
        pred,
        PixelRange {
            x0: 0,
            y0: 0,
            x1: 3,
            y1: 3
        }
    );
}

#[test]
fn loc_tie_goes_to_the_component_found_first_in_row_major_order() {
    #[rustfmt::skip]
    let data = [
        0.0, 0.0, 1.0, 1.0,
        0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0,
        1.0, 1.0, 0.0, 0.0,
    ];
    let pred = largest_component_box(&map(4, 4, &data), LOC_THRESHOLD).unwrap();
    assert_eq!(
        pred,
        PixelRange {
            x0: 2,
            y0: 0,
            x1: 4,
            y1: 1
        }
    );
}

#[test]
fn loc_of_an_empty_map_is_zero_and_counted() {
    let zeros = [0f32; 16];
    assert_eq!(largest_component_box(&map(4, 4, &zeros), LOC_THRESHOLD), None);
    let mut loc = Loc::default();
    add_boxed(&mut loc, &zeros, &[BBox::new(0.0, 0.0, 4.0, 4.0)]);
    let values = loc.finish();
    assert_eq!(values[0].value, Some(0.0));
    assert_eq!(values[1].value, Some(0.0));
    assert_eq!(values[0].images, 1);
}

#[test]
fn box_metrics_skip_images_without_boxes() {
    let boxes_outside = [BBox::new(10.0, 10.0, 20.0, 20.0)];
    let degenerate = [BBox::new(2.0, 2.0, 2.0, 3.0), BBox::new(3.0, 0.0, 1.0, 4.0)];
    for name in ["loc", "iou", "pointing", "energy"] {
        let mut m = metric_by_name(name).unwrap();
        add_boxed(m.as_mut(), &COMPONENT, &[]);
        add_boxed(m.as_mut(), &COMPONENT, &boxes_outside);
        add_boxed(m.as_mut(), &COMPONENT, &degenerate);
        let v = &m.finish()[0];
        assert_eq!((v.images, v.skipped, v.value), (0, 3, None), "{name}");
        add_boxed(m.as_mut(), &COMPONENT, &[BBox::new(1.0, 1.0, 3.0, 3.0)]);
        let v = &m.finish()[0];
        assert_eq!((v.images, v.skipped), (1, 3), "{name}");
        assert!(v.value.unwrap() > 0.0, "{name}");
        // No boxes in the cache at all is an error, not a skip.
        let err = m.add(&ImageInput::new(map(4, 4, &COMPONENT))).unwrap_err();
        assert!(err.to_string().contains("ground-truth boxes"), "{err}");
    }
}

#[test]
fn boxes_are_clipped_to_the_image() {
    assert_eq!(
        BBox::new(-5.0, -5.0, 2.0, 2.0).pixels(4, 4),
        PixelRange {
            x0: 0,
            y0: 0,
            x1: 2,
            y1: 2
        }
    );
    assert_eq!(
        BBox::new(3.0, 1.0, 10.0, 10.0).pixels(4, 4),
        PixelRange {
            x0: 3,
            y0: 1,
            x1: 4,
            y1: 4
        }
    );
    // Fractional edges: a pixel is inside when its centre is.
    assert_eq!(
        BBox::new(0.4, 0.6, 2.5, 2.6).pixels(4, 4),
        PixelRange {
            x0: 0,
            y0: 1,
            x1: 2,
            y1: 3
        }
    );
    assert!(BBox::new(5.0, 5.0, 9.0, 9.0).pixels(4, 4).is_empty());
    // A box sticking out of the image scores as its clipped part: the prediction (x,y 1..3)
    // against the box clipped to x,y 1..4 → 4 / 9.
    let mut loc = Loc::default();
    add_boxed(&mut loc, &COMPONENT, &[BBox::new(1.0, 1.0, 100.0, 100.0)]);
    close(loc.finish()[0].value.unwrap(), 4.0 / 9.0);
}

#[test]
fn non_finite_boxes_are_an_error() {
    let mut iou = Iou::default();
    let mut input = ImageInput::new(map(4, 4, &COMPONENT));
    let bad = [BBox::new(f32::NAN, 0.0, 2.0, 2.0)];
    input.boxes = Some(&bad);
    assert!(matches!(iou.add(&input), Err(MetricError::NonFinite { .. })));
    assert_eq!(only(&iou).images, 0);
}

#[rustfmt::skip]
const BLOCK: [f32; 16] = [
    0.5, 0.9, 0.0, 0.0,
    0.7, 0.6, 0.2, 0.0,
    0.0, 0.49, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.3,
];

#[test]
fn iou_of_the_half_mask_with_the_box_union() {
    let mut iou = Iou::default();
    // Mask {≥ 0.5} = the 2×2 block top-left (0.5 counts, 0.49 does not). Box x 1..3, y 0..2:
    // 4 pixels, 2 of them in the mask → 2 / (4 + 4 − 2) = 1/3.
    add_boxed(&mut iou, &BLOCK, &[BBox::new(1.0, 0.0, 3.0, 2.0)]);
    // Plus a box on pixel (y3, x0): the union has 5 pixels → 2 / (4 + 5 − 2) = 2/7; an
    // overlapping duplicate does not count twice.
    add_boxed(
        &mut iou,
        &BLOCK,
        &[
            BBox::new(1.0, 0.0, 3.0, 2.0),
            BBox::new(0.0, 3.0, 1.0, 4.0),
            BBox::new(1.0, 0.0, 2.0, 1.0),
        ],
    );
    close(only(&iou).value.unwrap(), (1.0 / 3.0 + 2.0 / 7.0) / 2.0);
}

#[test]
fn pointing_hits_and_ties() {
    // BLOCK's maximum is at (y0, x1).
    assert_eq!(argmax(&map(4, 4, &BLOCK)), Some((0, 1)));
    let mut pointing = Pointing::default();
    add_boxed(&mut pointing, &BLOCK, &[BBox::new(1.0, 0.0, 2.0, 1.0)]); // hit
    add_boxed(&mut pointing, &BLOCK, &[BBox::new(0.0, 0.0, 1.0, 4.0)]); // miss
    let mut tie = [0f32; 16];
    tie[0] = 1.0;
    tie[15] = 1.0;
    // Equal maxima: the first in row-major order, (0,0), is the point.
    add_boxed(&mut pointing, &tie, &[BBox::new(3.0, 3.0, 4.0, 4.0)]); // miss
    add_boxed(&mut pointing, &tie, &[BBox::new(0.0, 0.0, 1.0, 1.0)]); // hit
                                                                      // An all-zero map points nowhere: a miss, even with the whole image boxed.
    add_boxed(&mut pointing, &[0.0; 16], &[BBox::new(0.0, 0.0, 4.0, 4.0)]);
    let v = only(&pointing);
    close(v.value.unwrap(), 2.0 / 5.0);
    assert_eq!(v.images, 5);
}

#[test]
fn energy_is_the_mass_inside_the_boxes() {
    let mut data = [0f32; 16];
    data[0] = 1.0;
    data[1] = 0.5;
    data[15] = 0.5;
    let mut energy = Energy::default();
    // Boxes over (0,0) and (0,0)+(0,1), overlapping: 1.5 of 2.0 inside, counted once.
    add_boxed(
        &mut energy,
        &data,
        &[BBox::new(0.0, 0.0, 1.0, 1.0), BBox::new(0.0, 0.0, 2.0, 1.0)],
    );
    // An all-zero map has no mass inside: 0.
    add_boxed(&mut energy, &[0.0; 16], &[BBox::new(0.0, 0.0, 4.0, 4.0)]);
    let v = only(&energy);
    close(v.value.unwrap(), (0.75 + 0.0) / 2.0);
    assert_eq!(v.images, 2);
}

/// One image for the faithfulness metrics: k = 2 channels over 2 positions,
/// A = [[1, 3], [2, 0]], S = [1, 0].
fn faithful_input<'a>(head: Head<'a>, target: i64) -> (Vec<f32>, Vec<f32>, Head<'a>, i64) {
    (vec![1.0, 3.0, 2.0, 0.0], vec![1.0, 0.0], head, target)
}

fn add_feature(m: &mut dyn Metric, parts: &(Vec<f32>, Vec<f32>, Head<'_>, i64)) -> Result<(), MetricError> {
    let zeros = [0f32; 4];
    let mut input = ImageInput::new(map(2, 2, &zeros));
    input.feature = Some(FeatureInput {
        activations: &parts.0,
        k: 2,
        saliency: &parts.1,
        head: parts.2,
        target: parts.3,
    });
    m.add(&input)
}

#[test]
fn ad_ic_ag_by_hand() {
    // GAP(A) = [2, 1]; A' = A ⊙ S = [[1, 0], [2, 0]], GAP(A') = [0.5, 1].
    // Identity head, no bias: logits [2, 1] and [0.5, 1].
    // Target 0: p = σ(1) = 0.7310585786, p' = σ(−0.5) = 0.3775406688;
    //   AD term (p − p')/p = 0.4835698809, IC 0, AG 0.
    // Target 1: p = σ(−1) = 0.2689414214, p' = σ(0.5) = 0.6224593312;
    //   AD 0, IC 1, AG term (p' − p)/(1 − p) = 0.4835698809.
    // Means ·100: AD = 24.178494045, IC = 50, AG = 24.178494045.
    let (weight, bias) = ([1.0f32, 0.0, 0.0, 1.0], [0.0f32, 0.0]);
    let head = Head::new(&weight, &bias, 2).unwrap();
    let c = confidences(&FeatureInput {
        activations: &[1.0, 3.0, 2.0, 0.0],
        k: 2,
        saliency: &[1.0, 0.0],
        head,
        target: 0,
    })
    .unwrap();
    close(c.p, 0.7310585786300049);
    close(c.masked, 0.3775406687981454);
    close(c.rest, 1.0 - 0.7310585786300049);
    let expected = [
        ("ad_feat", 24.17849404724501, Better::Lower),
        ("ic_feat", 50.0, Better::Higher),
        ("ag_feat", 24.17849404724501, Better::Higher),
    ];
    for (name, value, better) in expected {
        let mut m = metric_by_name(name).unwrap();
        add_feature(m.as_mut(), &faithful_input(head, 0)).unwrap();
        add_feature(m.as_mut(), &faithful_input(head, 1)).unwrap();
        let v = only(m.as_ref());
        close(v.value.unwrap(), value);
        assert_eq!((v.name, v.better, v.images), (name, better, 2));
    }
}

#[test]
fn ad_with_a_bias() {
    // Bias [0.5, 0]: logits [2.5, 1] → p = σ(1.5) = 0.8175744762; masked [1, 1] → p' = 0.5.
    // AD = (p − 0.5)/p · 100 = 38.84349199; IC = 0; AG = 0.
    let (weight, bias) = ([1.0f32, 0.0, 0.0, 1.0], [0.5f32, 0.0]);
    let head = Head::new(&weight, &bias, 2).unwrap();
    for (name, value) in [("ad_feat", 38.84349199257851), ("ic_feat", 0.0), ("ag_feat", 0.0)] {
        let mut m = metric_by_name(name).unwrap();
        add_feature(m.as_mut(), &faithful_input(head, 0)).unwrap();
        close(only(m.as_ref()).value.unwrap(), value);
    }
}

#[test]
fn faithfulness_is_nan_free_at_saturated_probabilities() {
    // Logits ±2000: p is exactly 1 (1 − p underflows to 0) or exactly 0.
    let (weight, bias) = ([1000.0f32, 0.0, -1000.0, 0.0], [0.0f32, 0.0]);
    let head = Head::new(&weight, &bias, 2).unwrap();
    for name in ["ad_feat", "ic_feat", "ag_feat"] {
        let mut m = metric_by_name(name).unwrap();
        add_feature(m.as_mut(), &faithful_input(head, 0)).unwrap();
        add_feature(m.as_mut(), &faithful_input(head, 1)).unwrap();
        let v = only(m.as_ref());
        assert!(v.value.unwrap().is_finite(), "{name}: {v:?}");
    }
}

#[test]
fn faithfulness_rejects_bad_input() {
    let (weight, bias) = ([1.0f32, 0.0, 0.0, 1.0], [0.0f32, 0.0]);
    let head = Head::new(&weight, &bias, 2).unwrap();
    let mut ad = metric_by_name("ad_feat").unwrap();
    add_feature(ad.as_mut(), &faithful_input(head, 0)).unwrap();
    for target in [2, -1] {
        let err = add_feature(ad.as_mut(), &faithful_input(head, target)).unwrap_err();
        assert_eq!(err, MetricError::TargetOutOfRange { target, classes: 2 });
    }
    let mut short = faithful_input(head, 0);
    short.0.pop();
    assert!(matches!(
        add_feature(ad.as_mut(), &short),
        Err(MetricError::Shape { .. })
    ));
    let mut nan = faithful_input(head, 0);
    nan.0[1] = f32::NAN;
    assert!(matches!(
        add_feature(ad.as_mut(), &nan),
        Err(MetricError::NonFinite { .. })
    ));
    // Errors leave the accumulator as it was.
    assert_eq!(only(ad.as_ref()).images, 1);
    // No feature input at all.
    let err = ad.add(&ImageInput::new(map(4, 4, &COMPONENT))).unwrap_err();
    assert!(matches!(
        err,
        MetricError::MissingInput {
            metric: "ad_feat",
            ..
        }
    ));
    // Head shapes.
    assert!(Head::new(&weight, &bias, 3).is_err());
    assert!(Head::new(&weight, &[], 2).is_err());
    assert!(Head::new(&[1.0, f32::INFINITY, 0.0, 1.0], &bias, 2).is_err());
    let (w3, b3) = ([1.0f32; 3], [0.0f32]);
    let head3 = Head::new(&w3, &b3, 3).unwrap();
    let err = add_feature(ad.as_mut(), &faithful_input(head3, 0)).unwrap_err();
    assert!(err.to_string().contains("3"), "{err}");
}

#[test]
fn pearson_by_hand_and_constant_maps() {
    close(pearson(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 8.0]), 1.0);
    close(pearson(&[1.0, 2.0, 3.0, 4.0], &[4.0, 3.0, 2.0, 1.0]), -1.0);
    // Means 1/4; cov = −1/4, variances 3/4 → −1/3.
    close(pearson(&[1.0, 0.0, 0.0, 0.0], &[0.0, 1.0, 0.0, 0.0]), -1.0 / 3.0);
    close(pearson(&[0.0; 4], &[0.0; 4]), 1.0);
    close(pearson(&[0.5; 4], &[0.0; 4]), 0.0);
    close(pearson(&[0.0; 4], &[1.0, 0.0, 0.0, 0.0]), 0.0);
    close(pearson(&[1.0, 0.0, 0.0, 0.0], &[0.3; 4]), 0.0);
}

#[test]
fn robust_averages_the_correlations() {
    let (a, b, c) = (
        [1.0f32, 0.0, 0.0, 0.0],
        [0.0f32, 1.0, 0.0, 0.0],
        [2.0f32, 0.0, 0.0, 0.0],
    );
    let mut robust = Robust::default();
    for other in [&b, &c] {
        let mut input = ImageInput::new(map(2, 2, &a));
        input.perturbed = Some(map(2, 2, other));
        robust.add(&input).unwrap();
    }
    let v = only(&robust);
    close(v.value.unwrap(), (-1.0 / 3.0 + 1.0) / 2.0);
    assert_eq!((v.images, v.better), (2, Better::Higher));
    let mut input = ImageInput::new(map(2, 2, &a));
    input.perturbed = Some(map(1, 4, &b));
    assert!(robust.add(&input).is_err());
    assert!(robust.add(&ImageInput::new(map(2, 2, &a))).is_err());
}

#[test]
fn complexity_is_the_mean() {
    let mut complexity = Complexity::default();
    complexity.add(&ImageInput::new(map(4, 4, &COMPONENT))).unwrap(); // 2.0 / 16
    complexity.add(&ImageInput::new(map(4, 4, &[0.0; 16]))).unwrap();
    let v = only(&complexity);
    close(v.value.unwrap(), (2.0 / 16.0) / 2.0);
    assert_eq!((v.images, v.better), (2, Better::Lower));
}

#[test]
fn finish_without_images_has_no_value() {
    for name in METRIC_NAMES {
        let m = metric_by_name(name).unwrap();
        for v in m.finish() {
            assert_eq!((v.value, v.images, v.skipped), (None, 0, 0), "{name}");
        }
    }
}

#[test]
fn maps_are_checked() {
    assert!(matches!(
        Map::new(&[0.0; 15], 4, 4),
        Err(MetricError::Shape { .. })
    ));
    assert!(matches!(Map::new(&[], 0, 4), Err(MetricError::Shape { .. })));
    assert!(matches!(
        Map::new(&[f32::NAN; 4], 2, 2),
        Err(MetricError::NonFinite { .. })
    ));
    assert!(Map::new(&[0.0; 4], usize::MAX, 2).is_err());
}

#[test]
fn names_parse_with_clear_errors() {
    let parsed = metrics_by_names("loc, ad_feat,loc").unwrap();
    let names: Vec<_> = parsed.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["loc", "ad_feat"]);
    for name in METRIC_NAMES {
        assert_eq!(metric_by_name(name).unwrap().name(), *name);
    }
    let err = metric_by_name("bogus").err().unwrap().to_string();
    assert_eq!(
        err,
        "unknown metric `bogus`; valid metrics: loc, iou, pointing, energy, ad_feat, ic_feat, ag_feat, robust, complexity"
    );
    let err = metric_by_name("loc_acc").err().unwrap().to_string();
    assert!(err.contains("reported by metric `loc`"), "{err}");
    let err = metric_by_name("AD_FEAT").err().unwrap().to_string();
    assert!(err.contains("did you mean `ad_feat`?"), "{err}");
    // The image-level names re-run the model: they point to the feature-level metric and to Python.
    for name in ["ad", "ic", "ag"] {
        let err = metric_by_name(name).err().unwrap();
        assert_eq!(err, MetricError::NeedsModel { name: name.into() });
        let text = err.to_string();
        assert!(
            text.contains(&format!("`{name}_feat`")) && text.contains("camc.torch.evaluate"),
            "{text}"
        );
    }
    for name in ["deletion", "insertion", "road", "coherency", "adcc"] {
        let text = metric_by_name(name).err().unwrap().to_string();
        assert!(
            text.contains(&format!("metric `{name}` re-runs the model"))
                && text.contains("camc.torch.evaluate"),
            "{text}"
        );
    }
    assert_eq!(metrics_by_names(" , ").err().unwrap(), MetricError::NoMetric);
    assert!(metrics_by_names("iou,nope").is_err());
}

#[test]
fn needs_name_the_missing_tensor() {
    let ad = metric_by_name("ad_feat").unwrap();
    let has = |t: &str| ["A", "G", "target"].contains(&t);
    let err = check_needs(ad.as_ref(), "x.safetensors", has, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "metric `ad_feat` needs tensor `head.weight`, which cache x.safetensors does not have"
    );
    let all = |_: &str| true;
    assert!(check_needs(ad.as_ref(), "c", all, false).is_ok());
    let robust = metric_by_name("robust").unwrap();
    let err = check_needs(robust.as_ref(), "c", all, false).unwrap_err();
    assert!(err.to_string().contains("--perturbed"), "{err}");
    assert!(check_needs(robust.as_ref(), "c", all, true).is_ok());
    let loc = metric_by_name("loc").unwrap();
    let err = check_needs(loc.as_ref(), "c", has, true).unwrap_err();
    assert!(err.to_string().contains("tensor `boxes`"), "{err}");
    let complexity = metric_by_name("complexity").unwrap();
    assert!(check_needs(complexity.as_ref(), "c", |_| false, false).is_ok());
}

#[test]
fn boxes_tensor_splits_per_image() {
    let flat = [0.0, 0.0, 2.0, 2.0, 1.0, 1.0, 3.0, 3.0];
    let one = boxes_per_image(&flat, &[2, 4], None).unwrap();
    assert_eq!(
        one,
        vec![
            vec![BBox::new(0.0, 0.0, 2.0, 2.0)],
            vec![BBox::new(1.0, 1.0, 3.0, 3.0)]
        ]
    );
    let many = boxes_per_image(&flat, &[1, 2, 4], None).unwrap();
    assert_eq!(many[0].len(), 2);
    let counted = boxes_per_image(&[flat, flat].concat(), &[2, 2, 4], Some(&[1, 0])).unwrap();
    assert_eq!(counted, vec![vec![BBox::new(0.0, 0.0, 2.0, 2.0)], vec![]]);
    assert!(boxes_per_image(&flat, &[2, 2, 4], Some(&[3, 0])).is_err());
    assert!(boxes_per_image(&flat, &[1, 2, 4], Some(&[-1])).is_err());
    assert!(boxes_per_image(&flat, &[1, 2, 4], Some(&[1, 1])).is_err());
    assert!(boxes_per_image(&flat, &[3, 4], None).is_err());
    assert!(boxes_per_image(&flat, &[8], None).is_err());
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A sparse map with many ties: values in {0, 0.1, 0.2, ..., 1}, half of them 0.
    fn map(&mut self, len: usize) -> Vec<f32> {
        (0..len)
            .map(|_| {
                if self.below(2) == 0 {
                    0.0
                } else {
                    self.below(11) as f32 / 10.0
                }
            })
            .collect()
    }
}

/// Reference for `largest_component_box`: every kept pixel repeatedly takes the smallest label
/// of its 8 neighbours until nothing changes, so a component's label is its first pixel in
/// row-major order; the largest component wins, ties to the smallest label.
fn reference_component_box(data: &[f32], h: usize, w: usize) -> Option<PixelRange> {
    let max = data.iter().copied().fold(0f32, f32::max);
    if max <= 0.0 {
        return None;
    }
    let keep: Vec<bool> = data
        .iter()
        .map(|&v| f64::from(v) >= 0.15 * f64::from(max))
        .collect();
    let mut label: Vec<usize> = (0..h * w).collect();
    let mut changed = true;
    while changed {
        changed = false;
        for p in (0..h * w).filter(|&p| keep[p]) {
            let (y, x) = ((p / w) as i64, (p % w) as i64);
            for (dy, dx) in (-1..=1).flat_map(|dy| (-1..=1).map(move |dx| (dy, dx))) {
                let (ny, nx) = (y + dy, x + dx);
                if ny < 0 || nx < 0 || ny >= h as i64 || nx >= w as i64 {
                    continue;
                }
                let q = (ny * w as i64 + nx) as usize;
                if keep[q] && label[q] < label[p] {
                    label[p] = label[q];
                    changed = true;
                }
            }
        }
    }
    let roots: Vec<usize> = (0..h * w).filter(|&p| keep[p] && label[p] == p).collect();
    let size = |r: usize| (0..h * w).filter(|&p| keep[p] && label[p] == r).count();
    let best = roots
        .iter()
        .copied()
        .max_by_key(|&r| (size(r), std::cmp::Reverse(r)))?;
    let pixels: Vec<usize> = (0..h * w).filter(|&p| keep[p] && label[p] == best).collect();
    Some(PixelRange {
        x0: pixels.iter().map(|p| p % w).min()?,
        y0: pixels.iter().map(|p| p / w).min()?,
        x1: pixels.iter().map(|p| p % w + 1).max()?,
        y1: pixels.iter().map(|p| p / w + 1).max()?,
    })
}

#[test]
fn components_match_a_brute_force_reference_on_random_maps() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let (h, w) = (1 + rng.below(9) as usize, 1 + rng.below(9) as usize);
        let data = rng.map(h * w);
        let got = largest_component_box(&map(h, w, &data), LOC_THRESHOLD);
        assert_eq!(got, reference_component_box(&data, h, w), "{h}x{w} {data:?}");
    }
}

#[test]
fn random_inputs_give_finite_values_in_range() {
    let mut rng = Rng(42);
    let mut metrics: Vec<Box<dyn Metric>> = ["loc", "iou", "pointing", "energy", "robust", "complexity"]
        .iter()
        .map(|n| metric_by_name(n).unwrap())
        .collect();
    for _ in 0..300 {
        let (h, w) = (1 + rng.below(12) as usize, 1 + rng.below(12) as usize);
        let (data, other) = (rng.map(h * w), rng.map(h * w));
        // Corners from −4 to 15, sizes from −2 (inverted) to 9: inside, clipped, outside, empty.
        let boxes: Vec<BBox> = (0..rng.below(4))
            .map(|_| {
                let (x0, y0) = (rng.below(20) as f32 - 4.0, rng.below(20) as f32 - 4.0);
                let (bw, bh) = (rng.below(12) as f32 - 2.0, rng.below(12) as f32 - 2.0);
                BBox::new(x0, y0, x0 + bw, y0 + bh)
            })
            .collect();
        let mut input = ImageInput::new(map(h, w, &data));
        input.boxes = Some(&boxes);
        input.perturbed = Some(map(h, w, &other));
        for m in metrics.iter_mut() {
            m.add(&input).unwrap();
        }
    }
    for m in &metrics {
        for v in m.finish() {
            let x = v.value.unwrap();
            let lo = if v.name == "robust" { -1.0 } else { 0.0 };
            assert!(x.is_finite() && (lo..=1.0).contains(&x), "{v:?}");
            assert_eq!(v.images + v.skipped, 300, "{v:?}");
            assert!(v.images > 50, "too few scored images for {v:?}");
        }
    }
}

#[test]
fn precomputed_confidences_are_used() {
    // p = 0.8, p' = 0.6: AD term 0.25, IC 0, AG 0; p = 0.5, p' = 0.75: AD 0, IC 1, AG 0.5.
    let zeros = [0f32; 4];
    let cases = [
        Confidences {
            p: 0.8,
            rest: 0.2,
            masked: 0.6,
        },
        Confidences {
            p: 0.5,
            rest: 0.5,
            masked: 0.75,
        },
    ];
    for (name, value) in [("ad_feat", 12.5), ("ic_feat", 50.0), ("ag_feat", 25.0)] {
        let mut m = metric_by_name(name).unwrap();
        for c in cases {
            let mut input = ImageInput::new(map(2, 2, &zeros));
            input.confidences = Some(c);
            m.add(&input).unwrap();
        }
        close(only(m.as_ref()).value.unwrap(), value);
        let mut input = ImageInput::new(map(2, 2, &zeros));
        input.confidences = Some(Confidences {
            p: f64::NAN,
            rest: 0.0,
            masked: 0.5,
        });
        assert!(m.add(&input).is_err());
    }
}

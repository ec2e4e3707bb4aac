"""camc.torch.evaluate: hand-computed cases on a linear model of a 2x2 image, and pytorch-grad-cam
1.5.7's metric classes on torchvision resnet18 (seeded random weights, 64 px) and the demo CNN.

Run: PYTHONPATH=python .venv-py/bin/python -m unittest python/tests/test_torch_evaluate.py -v
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import unittest
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import camc  # noqa: E402
import models  # noqa: E402
from camc.torch import CAM, evaluate  # noqa: E402

torch.set_num_threads(int(os.environ.get("CAMC_TEST_THREADS", "1")))

IDENTITY_MAP = "cam identity(A: [k,h,w]) = relu(sum[k](A))"


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class Pixels(nn.Module):
    """The identity, through a parameter so that gradients reach it (for gradient programs)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.gain


class LinearOnPixels(nn.Module):
    """logits = [w · x, 0] on a [1, 2, 2] image: p(class 0) = sigmoid(w · x). `pixels` is the
    identity layer the CAM reads, so the map is the image itself, min-max normalized."""

    def __init__(self, weights, scale: float = 1.0):
        super().__init__()
        self.pixels = Pixels()
        self.head = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.weight[0] = torch.tensor(weights, dtype=torch.float32) * scale

    def forward(self, x):
        return self.head(self.pixels(x).flatten(1))


def row(rows, metric, program=None):
    found = [r for r in rows if r["metric"] == metric and (program is None or r["program"] == program)]
    assert len(found) == 1, (metric, rows)
    return found[0]


def blur_2x2(image):
    """Insertion's blurred start by hand: each pixel is Σ k(dy,dx)·x over the 2x2 image, k the
    normalized 11x11 exp(-(i²+j²)/50), zero padding."""
    z = sum(math.exp(-(i * i + j * j) / 50) for i in range(-5, 6) for j in range(-5, 6))
    out = [[0.0, 0.0], [0.0, 0.0]]
    for y in range(2):
        for x in range(2):
            out[y][x] = sum(math.exp(-((y - v) ** 2 + (x - u) ** 2) / 50) / z * image[v][u]
                            for v in range(2) for u in range(2))
    return out


def auc(points):
    steps = len(points) - 1
    return (sum(points) - (points[0] + points[-1]) / 2) / steps


class HandComputed(unittest.TestCase):
    """Image [[1, 2], [2, 4]], weights [[1, 1], [5, 1]]: the map (the image min-max normalized:
    [[0, 1/3], [1/3, 1]]) ties at (0,1) and (1,0), which the weights tell apart."""

    image = [[1.0, 2.0], [2.0, 4.0]]
    weights = [1.0, 1.0, 5.0, 1.0]

    def run_metrics(self, model, x, metrics, program=IDENTITY_MAP):
        return evaluate(model, [model.pixels], [program], x, targets=0, metrics=metrics, per_image=True)

    def test_ad_ic_ag_deletion_insertion(self):
        model = LinearOnPixels(self.weights)
        x = torch.tensor(self.image).reshape(1, 1, 2, 2)
        rows = self.run_metrics(model, x, ["ad", "ic", "ag", "deletion", "insertion"])
        w = [[1, 1], [5, 1]]
        m = [[0.0, 1 / 3], [1 / 3, 1.0]]
        logit = sum(w[y][c] * self.image[y][c] for y in range(2) for c in range(2))  # 17
        p = sigmoid(logit)
        masked = sum(w[y][c] * self.image[y][c] * m[y][c] for y in range(2) for c in range(2))
        o = sigmoid(masked)
        self.assertAlmostEqual(row(rows, "ad")["value"], max(0, p - o) / p * 100, places=4)
        self.assertEqual(row(rows, "ic")["value"], 0.0)
        self.assertEqual(row(rows, "ag")["value"], 0.0)
        # Deletion order: (1,1) then the tie (0,1), (1,0) by raster index, then (0,0).
        deleted = [17, 13, 11, 1, 0]
        self.assertAlmostEqual(row(rows, "deletion")["value"], auc([sigmoid(s) for s in deleted]), places=6)
        # The other tie order would give another value: the test tells them apart.
        self.assertNotAlmostEqual(auc([sigmoid(s) for s in [17, 13, 3, 1, 0]]), auc([sigmoid(s) for s in deleted]), 3)
        blurred = blur_2x2(self.image)
        start = [[blurred[y][c] for c in range(2)] for y in range(2)]
        points = []
        for inserted in [[], [(1, 1)], [(1, 1), (0, 1)], [(1, 1), (0, 1), (1, 0)], [(1, 1), (0, 1), (1, 0), (0, 0)]]:
            img = [[self.image[y][c] if (y, c) in inserted else start[y][c] for c in range(2)] for y in range(2)]
            points.append(sigmoid(sum(w[y][c] * img[y][c] for y in range(2) for c in range(2))))
        self.assertAlmostEqual(row(rows, "insertion")["value"], auc(points), places=6)
        for r in rows:
            self.assertEqual(r["images"], 1)
            self.assertEqual(r["per_image"], [r["value"]])

    def test_an_increase_in_confidence_and_the_average_gain(self):
        # Negative weights: masking the image raises the score.
        model = LinearOnPixels([-1.0, -1.0, -1.0, -1.0])
        x = torch.tensor(self.image).reshape(1, 1, 2, 2)
        rows = self.run_metrics(model, x, ["ad", "ic", "ag"])
        p, o = sigmoid(-9.0), sigmoid(-(2 / 3 + 2 / 3 + 4))
        self.assertEqual(row(rows, "ad")["value"], 0.0)
        self.assertEqual(row(rows, "ic")["value"], 100.0)
        self.assertAlmostEqual(row(rows, "ag")["value"], (o - p) / (1 - p) * 100, places=4)

    def test_an_all_zero_map(self):
        # relu(-A) of a positive image is 0 everywhere: the masked image is 0 (o = 1/2), and
        # deletion removes pixels in raster order (every value ties).
        model = LinearOnPixels(self.weights)
        x = torch.tensor(self.image).reshape(1, 1, 2, 2)
        zero = "cam zero(A: [k,h,w]) = relu(sum[k](0 - A))"
        rows = self.run_metrics(model, x, ["ad", "deletion", "complexity"], program=zero)
        p = sigmoid(17)
        self.assertAlmostEqual(row(rows, "ad")["value"], (p - 0.5) / p * 100, places=4)
        deleted = [17, 16, 14, 4, 0]  # (0,0), (0,1), (1,0), (1,1)
        self.assertAlmostEqual(row(rows, "deletion")["value"], auc([sigmoid(s) for s in deleted]), places=6)
        self.assertEqual(row(rows, "complexity")["value"], 0.0)

    def test_p_equal_to_one_contributes_nothing_to_the_average_gain(self):
        model = LinearOnPixels(self.weights, scale=100.0)  # logit 1700: p is 1.0 in float32
        x = torch.tensor(self.image).reshape(1, 1, 2, 2)
        rows = self.run_metrics(model, x, ["ad", "ag"])
        self.assertEqual(row(rows, "ag")["value"], 0.0)
        self.assertEqual(row(rows, "ag")["images"], 1)
        o = sigmoid(100 * (2 / 3 + 10 / 3 + 4))  # also 1.0
        self.assertAlmostEqual(row(rows, "ad")["value"], max(0.0, 1.0 - o) * 100, places=4)

    def test_deletion_steps_on_a_larger_image(self):
        # 12x12 = 144 pixels: 2 pixels per step (ceil(144/100)), 72 steps; every weight 1 and
        # every pixel 1, so after step t the logit is 144 - 2t whatever the order.
        class Sum(nn.Module):
            def __init__(self):
                super().__init__()
                self.pixels = nn.Identity()

            def forward(self, x):
                s = self.pixels(x).flatten(1).sum(dim=1, keepdim=True) / 16
                return torch.cat([s, torch.zeros_like(s)], dim=1)

        model = Sum().eval()
        x = torch.ones(1, 1, 12, 12)
        rows = evaluate(model, [model.pixels], [IDENTITY_MAP], x, targets=0, metrics=["deletion"])
        expected = auc([sigmoid((144 - 2 * t) / 16) for t in range(73)])
        self.assertAlmostEqual(row(rows, "deletion")["value"], expected, places=6)


class RoadImputation(unittest.TestCase):
    def test_a_missing_pixel_is_the_weighted_mean_of_its_neighbours(self):
        from camc.torch._road import impute

        image = np.arange(9, dtype=np.float32).reshape(1, 3, 3) ** 2
        keep = np.ones((3, 3), dtype=bool)
        keep[1, 1] = False
        filled = impute(image, keep, noise=0.0, generator=None)
        # Edges 1/6, corners 1/12: (1 + 9 + 25 + 49)/6 + (0 + 4 + 36 + 64)/12.
        self.assertAlmostEqual(float(filled[0, 1, 1]), (1 + 9 + 25 + 49) / 6 + (0 + 4 + 36 + 64) / 12, places=5)
        np.testing.assert_array_equal(np.delete(filled.reshape(-1), 4), np.delete(image.reshape(-1), 4))

    def test_two_missing_neighbours_solve_together_and_a_corner_uses_its_three_neighbours(self):
        from camc.torch._road import impute

        image = np.zeros((1, 2, 2), dtype=np.float32)
        image[0, 1, 1] = 12.0
        keep = np.array([[False, True], [True, True]])
        # (0,0)'s neighbours inside the image: (0,1) 1/6, (1,0) 1/6, (1,1) 1/12; their mean
        # weighted by those weights (which sum to 5/12): 12 · (1/12) / (5/12) = 2.4.
        self.assertAlmostEqual(float(impute(image, keep, 0.0, None)[0, 0, 0]), 2.4, places=5)
        keep = np.array([[False, False], [True, True]])
        # Two unknowns a=(0,0), b=(0,1): 5/12·a = b/6 + 0/6 + 12/12 and 5/12·b = a/6 + 12/6 + 0/12.
        a = np.linalg.solve([[5 / 12, -1 / 6], [-1 / 6, 5 / 12]], [1.0, 2.0])
        np.testing.assert_allclose(impute(image, keep, 0.0, None)[0, 0], a, rtol=1e-5)

    def test_no_pixel_kept_imputes_zeros(self):
        from camc.torch._road import impute

        image = np.ones((3, 4, 4), dtype=np.float32)
        np.testing.assert_array_equal(impute(image, np.zeros((4, 4), dtype=bool), 0.0, None), 0.0)


class Usage(unittest.TestCase):
    def setUp(self):
        self.model = LinearOnPixels([1.0, 1.0, 1.0, 1.0])
        self.x = torch.rand(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))

    def test_bad_metrics_and_arguments_are_camc_errors(self):
        with self.assertRaisesRegex(camc.InputError, "unknown metric `bogus`.*re-run the model: ad, ic"):
            evaluate(self.model, [self.model.pixels], [IDENTITY_MAP], self.x, metrics=["bogus"])
        with self.assertRaisesRegex(camc.InputError, "needs ground-truth boxes"):
            evaluate(self.model, [self.model.pixels], [IDENTITY_MAP], self.x, metrics=["loc"])
        with self.assertRaisesRegex(camc.InputError, "use the image-level `ad`"):
            evaluate(self.model, [self.model.pixels], [IDENTITY_MAP], self.x, metrics=["ad_feat"])
        with self.assertRaisesRegex(camc.InputError, "batch_size"):
            evaluate(self.model, [self.model.pixels], [IDENTITY_MAP], self.x, batch_size=0)
        with self.assertRaisesRegex(camc.InputError, "expected 3 integer class indices"):
            evaluate(self.model, [self.model.pixels], [IDENTITY_MAP], self.x, targets=[0, 1], batch_size=3)
        with self.assertRaisesRegex(camc.InputError, "labels"):
            evaluate(self.model, [self.model.pixels], [IDENTITY_MAP], self.x, targets="labels")

    def test_batches_of_a_data_loader_with_labels_and_the_boxes_metrics(self):
        loader = [(self.x[:2], torch.tensor([0, 1])), (self.x[2:], torch.tensor([1]))]
        boxes = [[[0, 0, 1, 1]], [], [[0, 0, 2, 2], [1, 1, 2, 2]]]
        rows = evaluate(self.model, [self.model.pixels], [IDENTITY_MAP, "gradcam"], loader, targets="labels",
                        metrics="ad,loc,pointing,complexity", boxes=boxes, per_image=True)
        names = [r["metric"] for r in rows if r["program"] == "gradcam"]
        self.assertEqual(names, ["ad", "loc", "loc_acc", "pointing", "complexity"])
        self.assertEqual(row(rows, "loc", "gradcam")["skipped"], 1)
        self.assertEqual(row(rows, "loc", "gradcam")["per_image"][1], None)
        # The same batches as one tensor with the labels as targets: the same rows.
        again = evaluate(self.model, [self.model.pixels], [IDENTITY_MAP, "gradcam"], self.x, targets=[0, 1, 1],
                         metrics="ad,loc,pointing,complexity", boxes=boxes, per_image=True, batch_size=2)
        for a, b in zip(rows, again):
            self.assertEqual(a["metric"], b["metric"])
            np.testing.assert_allclose(np.array(a["per_image"], dtype=float), np.array(b["per_image"], dtype=float),
                                       rtol=1e-6, atol=1e-9)
        # Each image's maps, scored alone by the cache metric: the same per-image values.
        maps = CAM(self.model, [self.model.pixels], IDENTITY_MAP)(self.x, targets=[0, 1, 1])
        mean = maps.reshape(3, -1).mean(dim=1).tolist()
        np.testing.assert_allclose(row(rows, "complexity", IDENTITY_MAP.strip())["per_image"], mean, rtol=1e-6)

    def test_report(self):
        with tempfile.TemporaryDirectory() as tmp:
            rows = evaluate(self.model, [self.model.pixels], [IDENTITY_MAP, "gradcampp"], self.x,
                            metrics=["ad", "deletion"], report=tmp)
            page = Path(tmp, "report.html").read_text()
            self.assertIn("<td class=\"num", page)
            self.assertIn("target ", page)  # each image's target class in its caption
            self.assertIn("deletion ", page)  # per-image values on hover
            self.assertTrue(Path(tmp, "input", "00000.png").exists())
            self.assertTrue(Path(tmp, "gradcampp", "00002.png").exists())
            self.assertNotIn("per_image", rows[0])
            json.dumps(rows)  # the rows are plain JSON


def softmax_targets(classes):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    return [ClassifierOutputSoftmaxTarget(c) for c in classes]


class AgainstPytorchGradCam(unittest.TestCase):
    """pytorch-grad-cam's metric classes on the same maps and model."""

    @classmethod
    def setUpClass(cls):
        cls.cases = [
            ("resnet18", models.resnet18(), lambda m: [m.layer4[-1]], models.images(3, 64, seed=1)),
            ("demo", models.demo_model(), lambda m: [m.features.relu4], models.demo_images(3)),
        ]

    def test_ad_and_ic_equal_the_confidence_change_of_cam_mult_image(self):
        from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange

        for name, model, layers, x in self.cases:
            with self.subTest(model=name):
                with torch.no_grad():
                    classes = model(x).argmax(dim=1).tolist()
                maps = CAM(model, layers(model), "gradcampp")(x, targets=classes)
                targets = softmax_targets(classes)
                diff = CamMultImageConfidenceChange()(x, maps.numpy(), targets, model)
                with torch.no_grad():
                    p = np.array([t(o).item() for t, o in zip(targets, model(x))])
                diff = np.asarray(diff).reshape(-1)
                rows = evaluate(model, layers(model), ["gradcampp"], x, metrics=["ad", "ic", "ag"], per_image=True)
                np.testing.assert_allclose(row(rows, "ad")["per_image"], np.maximum(0, -diff) / p * 100,
                                           rtol=1e-4, atol=1e-5)
                np.testing.assert_array_equal(row(rows, "ic")["per_image"], (diff > 0) * 100.0)
                np.testing.assert_allclose(row(rows, "ag")["per_image"], np.maximum(0, diff) / (1 - p) * 100,
                                           rtol=1e-4, atol=1e-5)

    def test_road_equals_road_combined_without_noise(self):
        from pytorch_grad_cam.metrics import road as pgc_road

        defaults = pgc_road.NoisyLinearImputer.__init__.__defaults__
        pgc_road.NoisyLinearImputer.__init__.__defaults__ = (0.0,) + defaults[1:]
        try:
            for name, model, layers, x in self.cases:
                with self.subTest(model=name):
                    with torch.no_grad():
                        classes = model(x).argmax(dim=1).tolist()
                    maps = CAM(model, layers(model), "gradcam")(x, targets=classes)
                    expected = pgc_road.ROADCombined(percentiles=[20, 40, 60, 80])(
                        x, maps.numpy(), softmax_targets(classes), model)
                    rows = evaluate(model, layers(model), ["gradcam"], x, metrics=["road"], per_image=True,
                                    road_noise=0.0)
                    np.testing.assert_allclose(row(rows, "road")["per_image"], np.asarray(expected).reshape(-1),
                                               atol=1e-5)
        finally:
            pgc_road.NoisyLinearImputer.__init__.__defaults__ = defaults

    def test_coherency_equals_pytorch_grad_cams(self):
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.metrics.arcc import Coherency

        for name, model, layers, x in self.cases:
            with self.subTest(model=name):
                with torch.no_grad():
                    classes = model(x).argmax(dim=1).tolist()
                targets = [__import__("pytorch_grad_cam.utils.model_targets", fromlist=["x"])
                           .ClassifierOutputTarget(c) for c in classes]
                with GradCAM(model, layers(model)) as reference:
                    maps = reference(x, targets=targets)
                    expected = Coherency()(x, maps, targets, model, reference)
                rows = evaluate(model, layers(model), ["gradcam"], x, metrics=["coherency", "adcc", "ad", "complexity"],
                                per_image=True)
                np.testing.assert_allclose(row(rows, "coherency")["per_image"], np.asarray(expected).reshape(-1),
                                           atol=1e-5)
                coh = np.array(row(rows, "coherency")["per_image"])
                cx = np.array(row(rows, "complexity")["per_image"])
                ad = np.array(row(rows, "ad")["per_image"])
                adcc = 3 / (1 / coh + 1 / (1 - cx) + 1 / (1 - ad / 100))
                np.testing.assert_allclose(row(rows, "adcc")["per_image"], adcc, rtol=1e-5)


if __name__ == "__main__":
    unittest.main()

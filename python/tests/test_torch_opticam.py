"""Opti-CAM (camc.torch.CAM(program="opticam"), camc.torch.optimize) against a line-by-line port of
the official algorithm (hanwei0912/OptiCAM, util.py: Basic_OptCAM with name_f 'logit_predict',
name_loss 'norm', name_norm 'max_min'), written here in plain torch independently of camc:
the gradient of the first step with respect to w, and the maps after 50 steps.

Run: PYTHONPATH=python .venv-py/bin/python -m unittest python/tests/test_torch_opticam.py -v
"""

from __future__ import annotations

import os
import unittest

import torch
import torch.nn.functional as F

import camc
import models
from camc.torch import CAM, optimize

torch.set_num_threads(int(os.environ.get("CAMC_TEST_THREADS", "1")))


class OfficialOptCAM:
    """Basic_OptCAM, its feature extractor replaced by a forward hook on the target layer."""

    def __init__(self, model, target_layer, max_iter=50, learning_rate=0.1):
        self.model = model.eval()
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.target_layer = target_layer
        self.first_grad = None

    def get_f(self, x, y):
        outputs = self.model(x)
        one_hot_labels = torch.eye(len(outputs[0]))[y]
        return torch.masked_select(outputs, one_hot_labels.bool())

    def get_loss(self, new_images, predict_labels, f_images):
        return torch.sum(torch.abs((f_images - self.get_f(new_images, predict_labels))))

    def normalization(self, saliency_map):
        max_value = saliency_map.view(saliency_map.size(0), -1).max(dim=-1)[0]
        min_value = saliency_map.view(saliency_map.size(0), -1).min(dim=-1)[0]
        delta = max_value - min_value
        min_value = min_value.reshape((saliency_map.shape[0], 1, 1, 1)).repeat(
            (1, saliency_map.shape[1], saliency_map.shape[2], saliency_map.shape[3]))
        delta = delta.reshape((saliency_map.shape[0], 1, 1, 1)).repeat(
            (1, saliency_map.shape[1], saliency_map.shape[2], saliency_map.shape[3]))
        return (saliency_map - min_value) / delta

    def combine_activations(self, feature, w, images):
        alpha = torch.nn.functional.softmax(w, dim=1)
        saliency_map = (alpha.repeat((1, 1, feature.shape[2], feature.shape[3])) * feature).sum(axis=1).reshape(
            (feature.shape[0], 1, feature.shape[2], feature.shape[3]))
        saliency_map = F.interpolate(saliency_map, size=(images.shape[2], images.shape[3]), mode="bilinear",
                                     align_corners=False)
        norm_saliency_map = self.normalization(saliency_map)
        new_images = norm_saliency_map.repeat((1, images.shape[1], 1, 1)) * images
        return norm_saliency_map, new_images

    def __call__(self, images, labels):
        kept = []
        handle = self.target_layer.register_forward_hook(lambda m, i, o: kept.append(o.detach()))
        try:
            with torch.no_grad():
                self.model(images)
        finally:
            handle.remove()
        feature = torch.relu(kept[0])
        w = (0.5 * torch.ones((feature.shape[0], feature.shape[1], 1, 1), dtype=torch.float)).requires_grad_(True)
        optimizer = torch.optim.Adam([w], lr=self.learning_rate)
        prev = 1e10
        f_images = self.get_f(images, labels).detach()
        for step in range(self.max_iter):
            norm_saliency_map, new_images = self.combine_activations(feature, w, images)
            loss = self.get_loss(new_images, labels, f_images)
            optimizer.zero_grad()
            loss.backward(retain_graph=True)
            if step == 0:
                self.first_grad = w.grad.detach().clone().reshape(w.shape[0], w.shape[1])
            optimizer.step()
            if step % (self.max_iter // 10) == 0:
                if loss > prev:
                    return norm_saliency_map[:, 0].detach()
                prev = loss
        norm_saliency_map, _ = self.combine_activations(feature, w, images)
        return norm_saliency_map[:, 0].detach()


def camc_first_gradient(model, layer, x, classes):
    """d loss / d w at w = 0.5, through camc's compiled opticam and its backward kernel."""
    kept = []
    handle = layer.register_forward_hook(lambda m, i, o: kept.append(o.detach()))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    cls = torch.tensor(classes)
    reference = logits.gather(1, cls.view(-1, 1)).squeeze(1)
    w = torch.full((x.shape[0], kept[0].shape[1]), 0.5, requires_grad=True)
    maps = camc.compile("opticam")(A=kept[0], w=w, size=tuple(x.shape[2:]))
    loss = (reference - model(maps.unsqueeze(1) * x).gather(1, cls.view(-1, 1)).squeeze(1)).abs().sum()
    (grad,) = torch.autograd.grad(loss, [w])
    return grad


class OptiCamAgainstOfficial(unittest.TestCase):
    def check(self, model, layer, x):
        with torch.no_grad():
            classes = model(x).argmax(1).tolist()
        official = OfficialOptCAM(model, layer)
        expected = official(x, torch.tensor(classes))
        grad = camc_first_gradient(model, layer, x, classes)
        # Both sides are float32 through the model's backward pass: the gradient agrees to 1e-5 of
        # its largest component (small components differ by rounding after cancellation).
        scale = float(official.first_grad.abs().max())
        torch.testing.assert_close(grad, official.first_grad, rtol=1e-5, atol=1e-5 * scale)
        with CAM(model, [layer], program="opticam") as cam:
            got = cam(x, targets=classes)
            self.assertEqual(cam.learn, "w")
        diff = (got - expected).abs()
        self.assertLessEqual(float(diff.mean()), 1e-3, f"mean {float(diff.mean())}, max {float(diff.max())}")
        self.assertLessEqual(float(diff.max()), 2e-2)
        return got

    def test_demo_cnn(self):
        model = models.demo_model()
        self.check(model, model.features.relu4, models.demo_images(4))

    def test_resnet18(self):
        model = models.resnet18()
        self.check(model, model.layer4, models.images(2, 64, seed=4))

    def test_lower_average_drop_than_gradcam_on_the_demo(self):
        # The paper's claim, on the demo CNN and 8 demo images: Opti-CAM's AD is lower than
        # Grad-CAM's (measured 4.5 vs 19.2). Its AG is *not* higher here (19.8 vs 25.1; see
        # docs/python.md), so only AD is asserted.
        from camc.torch import evaluate

        model = models.demo_model()
        rows = evaluate(model, [model.features.relu4], ["gradcam", "opticam"], models.demo_images(8),
                        metrics=["ad"])
        ad = {row["program"]: row["value"] for row in rows}
        self.assertLess(ad["opticam"], ad["gradcam"])

    def test_optimize_returns_the_learned_weights_and_takes_any_k_parameter(self):
        model = models.demo_model()
        x = models.demo_images(2)
        layer = model.features.relu4
        maps, w = optimize(model, [layer], "opticam", x, return_params=True)
        self.assertEqual(tuple(w.shape), (2, 64))
        # The maps are the program's on the learned weights.
        kept = []
        handle = layer.register_forward_hook(lambda m, i, o: kept.append(o.detach()))
        with torch.no_grad():
            model(x)
        handle.remove()
        again = camc.compile("opticam")(A=kept[0], w=w, size=tuple(x.shape[2:]))
        torch.testing.assert_close(maps, again, rtol=0, atol=1e-6)
        # Any program with a [k] parameter, started from given weights, with the "prob" objective.
        source = "cam mine(A: [k,h,w], v: [k]) = relu(sum[k](v * A))"
        maps = optimize(model, [layer], source, x, param="v", init=torch.ones(2, 64), steps=5,
                        objective="prob")
        self.assertEqual(tuple(maps.shape), (2, 64, 64))
        with self.assertRaisesRegex(camc.InputError, "objective"):
            optimize(model, [layer], "opticam", x, objective="loss")
        with self.assertRaisesRegex(camc.InputError, "not a parameter"):
            optimize(model, [layer], "opticam", x, param="v")


if __name__ == "__main__":
    unittest.main()

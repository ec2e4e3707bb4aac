"""Recipro-CAM through hooks (camc.torch.CAM(program="reciprocam" / "reciprocam_gauss")) against a
line-by-line port of the official algorithm (sybyun/ReciproCAM, src/recipro_cam.py: its forward
hook, `_mosaic_feature` with both branches, `_get_class_activaton_map`), written here
independently of camc's implementation, then pytorch-grad-cam's post-processing (min-max, resize
to the input, min-max again), which camc.torch.CAM matches for every other method.

Run: PYTHONPATH=python .venv-py/bin/python -m unittest python/tests/test_torch_recipro.py -v
"""

from __future__ import annotations

import os
import unittest

import numpy as np
import torch

import camc
import models
from camc.torch import CAM

torch.set_num_threads(int(os.environ.get("CAMC_TEST_THREADS", "1")))


class OfficialReciproCam:
    """The official ReciproCam, with the target layer given instead of searched for."""

    def __init__(self, model, target_layer, device, is_gaussian=False):
        self.model = model
        self.model.eval()
        self.device = device
        self.feature = None
        self.is_gaussian = is_gaussian
        filter = [[1 / 16.0, 1 / 8.0, 1 / 16.0],
                  [1 / 8.0, 1 / 4.0, 1 / 8.0],
                  [1 / 16.0, 1 / 8.0, 1 / 16.0]]
        self.gaussian = torch.tensor(filter).to(device)
        self.softmax = torch.nn.Softmax(dim=1)
        self.handle = target_layer.register_forward_hook(self._cam_hook())

    def _cam_hook(self):
        def fn(_, input, output):
            self.feature = output[0].unsqueeze(0)
            bs, nc, h, w = self.feature.shape
            new_features = self._mosaic_feature(self.feature, nc, h, w, self.is_gaussian)
            new_features = torch.cat((self.feature, new_features), dim=0)
            return new_features

        return fn

    def _mosaic_feature(self, feature_map, nc, h, w, is_gaussian=False):
        if is_gaussian is False:
            feature_map_repeated = feature_map.repeat(h * w, 1, 1, 1)
            mosaic_feature_map_mask = torch.zeros(h * w, nc, h, w).to(self.device)
            spatial_order = torch.arange(h * w).reshape(h, w)
            for i in range(h):
                for j in range(w):
                    k = spatial_order[i, j]
                    mosaic_feature_map_mask[k, :, i, j] = torch.ones(nc).to(self.device)
            new_features = feature_map_repeated * mosaic_feature_map_mask
        else:
            new_features = torch.zeros(h * w, nc, h, w).to(self.device)
            for b in range(h * w):
                for i in range(h):
                    kx_s = max(i - 1, 0)
                    kx_e = min(i + 1, h - 1)
                    sx_s = 1 if i == 0 else 0
                    sx_e = 1 if i == h - 1 else 2
                    for j in range(w):
                        ky_s = max(j - 1, 0)
                        ky_e = min(j + 1, w - 1)
                        sy_s = 1 if j == 0 else 0
                        sy_e = 1 if j == w - 1 else 2
                        if b == i * w + j:
                            r_feature_map = feature_map[0, :, i, j].reshape(feature_map.shape[1], 1, 1)
                            r_feature_map = r_feature_map.repeat(1, 3, 3)
                            score_map = r_feature_map * self.gaussian.repeat(feature_map.shape[1], 1, 1)
                            new_features[b, :, kx_s:kx_e + 1, ky_s:ky_e + 1] = score_map[:, sx_s:sx_e + 1, sy_s:sy_e + 1]
        return new_features

    def _get_class_activaton_map(self, mosaic_predic, index, h, w):
        cam = (mosaic_predic[:, index]).reshape((h, w))
        cam_min = cam.min()
        cam = (cam - cam_min) / (cam.max() - cam_min)
        return cam

    def __call__(self, input, index=None):
        # The official call on one image (its loop over a batch keeps the first image's index).
        with torch.no_grad():
            prediction = self.model(input)
            prediction = self.softmax(prediction)
            if index is None:
                index = prediction[0].argmax().item()
            _, _, h, w = self.feature.shape
            return self._get_class_activaton_map(prediction[1:, :], index, h, w), index

    def close(self):
        self.handle.remove()


def official_maps(model, layer, x, gaussian, classes=None):
    """The official map of each image (one at a time), post-processed as pytorch-grad-cam does."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    ref = OfficialReciproCam(model, layer, "cpu", gaussian)
    try:
        maps, chosen = [], []
        for b in range(x.shape[0]):
            cam, index = ref(x[b:b + 1], None if classes is None else classes[b])
            chosen.append(index)
            cam = np.nan_to_num(cam.numpy())  # a constant map: 0/0 in the official code
            scaled = scale_cam_image(cam[None], (x.shape[3], x.shape[2]))
            maps.append(scale_cam_image(np.maximum(scaled, 0))[0])
        return np.stack(maps), chosen
    finally:
        ref.close()


def hook_cam(model, layer, program):
    """A CAM that runs Recipro-CAM's copies through the model even where the fused kernel applies."""
    cam = CAM(model, [layer], program=program)
    cam._fused = None
    return cam


class ReciproCamHookPath(unittest.TestCase):
    def check(self, model, layer, x, gaussian, classes=None, **call):
        expected, chosen = official_maps(model, layer, x, gaussian, classes)
        program = "reciprocam_gauss" if gaussian else "reciprocam"
        with hook_cam(model, layer, program) as cam:
            got = cam(x, targets=classes, **call)
            self.assertEqual(cam.path, "hooks")
            np.testing.assert_array_equal(cam.outputs.argmax(dim=1).numpy() if classes is None else classes,
                                          chosen)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
        return got

    def test_resnet18_layer4_and_layer3(self):
        model = models.resnet18()
        x = models.images(3, 64, seed=2)
        for name, layer in [("layer4", model.layer4), ("layer3", model.layer3)]:
            for gaussian in (False, True):
                with self.subTest(layer=name, gaussian=gaussian):
                    self.check(model, layer, x, gaussian)

    def test_demo_cnn_with_given_targets(self):
        model = models.demo_model()
        x = models.demo_images(4)
        for gaussian in (False, True):
            with self.subTest(gaussian=gaussian):
                self.check(model, model.features.relu4, x, gaussian, classes=[3, 1, 4, 1])

    def test_a_batch_of_8_equals_one_by_one_whatever_the_copies_per_pass(self):
        model = models.demo_model()
        x = models.demo_images(8)
        with hook_cam(model, model.features.relu4, "reciprocam") as cam:
            together = cam(x)  # 65 inputs per image: 3 images per pass of 256, then 2
            one_pass = cam(x, batch_size=10_000)
            alone = torch.cat([cam(x[i:i + 1]) for i in range(8)])
            self.assertEqual(cam.outputs.shape[0], 1)
        np.testing.assert_allclose(together.numpy(), alone.numpy(), atol=1e-6)
        np.testing.assert_allclose(one_pass.numpy(), alone.numpy(), atol=1e-6)

    def test_copies_per_pass_on_a_gpu_follow_its_free_memory(self):
        from camc.torch._cam import inputs_that_fit

        # One image of 7x7 positions (50 rows) peaked at 50 MB: 1 MB a row; half of 8 GB free.
        self.assertEqual(inputs_that_fit(8_000_000_000, 50_000_000, 50), 4000)
        # Never fewer than one image's rows, whatever the memory says.
        self.assertEqual(inputs_that_fit(10_000_000, 50_000_000, 50), 50)
        self.assertEqual(inputs_that_fit(0, 0, 50), 50)

    def test_errors(self):
        with self.assertRaisesRegex(camc.InputError, "int targets"):
            model = models.demo_model()
            with hook_cam(model, model.features.relu4, "reciprocam") as cam:
                cam(models.demo_images(1), targets=[lambda row: row.sum()])
        model = models.demo_model()
        with self.assertRaisesRegex(camc.InputError, "one target layer"):
            CAM(model, [model.features.relu3, model.features.relu4], program="reciprocam")
        vit = models.tiny_vit()
        with self.assertRaisesRegex(camc.InputError, "no reshape_transform"):
            CAM(vit, [vit.blocks[-1].norm1], program="reciprocam", reshape_transform=models.vit_reshape_transform)


class ReciproCamFusedPath(unittest.TestCase):
    """Where the layer is followed by global average pooling and a linear head, CAM runs
    stdlib/reciprocam.cam (one kernel over A and the head) instead of the copies."""

    def compare(self, model, layer, x, classes=None):
        for program in ("reciprocam", "reciprocam_gauss"):
            with self.subTest(program=program):
                with CAM(model, [layer], program=program) as cam:
                    self.assertIn("path='auto'", repr(cam))
                    fused = cam(x, targets=classes)
                    self.assertEqual(cam.path, "fused")
                    self.assertIn("path='fused'", repr(cam))
                    fused_outputs = cam.outputs
                with hook_cam(model, layer, program) as cam:
                    hooks = cam(x, targets=classes)
                    # The same images; the hook path's batch also holds the copies.
                    np.testing.assert_allclose(fused_outputs.numpy(), cam.outputs.numpy(), atol=1e-5)
                np.testing.assert_allclose(fused.numpy(), hooks.numpy(), atol=1e-5)
                expected, _ = official_maps(model, layer, x, program == "reciprocam_gauss", classes)
                np.testing.assert_allclose(fused.numpy(), expected, atol=1e-5)

    def test_resnet18_layer4(self):
        model = models.resnet18()
        self.compare(model, model.layer4, models.images(3, 64, seed=2))

    def test_demo_cnn(self):
        model = models.demo_model()
        self.compare(model, model.features.relu4, models.demo_images(4), classes=[3, 1, 4, 1])

    def test_hooks_where_the_head_does_not_follow_the_layer(self):
        model = models.resnet18()
        x = models.images(2, 64, seed=1)
        with CAM(model, [model.layer3], program="reciprocam") as cam:
            got = cam(x)
            self.assertEqual(cam.path, "hooks")
            self.assertIn("path='hooks'", repr(cam))
        expected, _ = official_maps(model, model.layer3, x, False)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)

    def test_a_head_that_only_nearly_reproduces_the_output_takes_the_hooks(self):
        model = models.demo_model()

        class Nudged(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x) + 1e-3  # head(GAP(A)) is off by 1e-3: not the fused formula

        nudged = Nudged(model)
        x = models.demo_images(2)
        with CAM(nudged, [model.features.relu4], program="reciprocam") as cam:
            got = cam(x)
            self.assertEqual(cam.path, "hooks")
        expected, _ = official_maps(nudged, model.features.relu4, x, False)
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


if __name__ == "__main__":
    unittest.main()

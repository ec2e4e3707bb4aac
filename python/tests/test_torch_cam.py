"""camc.torch.CAM against pytorch-grad-cam 1.5.7 itself: the same maps within 1e-4 (max abs).

Run: PYTHONPATH=python .venv-py/bin/python -m unittest discover -s python/tests -p 'test_torch*' -v

torch runs on one thread (CAMC_TEST_THREADS=2 for two): on a shared, loaded 2-core machine two
OpenMP threads wait on each other and the file takes about four times longer.

Models: the demo CNN (trained weights and test images from examples/data when present),
torchvision resnet18 and vgg11 with seeded random weights at 64 px, and a tiny ViT (2 blocks,
64 dims, class token, pytorch-grad-cam's reshape_transform). Score-CAM and Ablation-CAM (one
forward pass per channel) run on the demo CNN and the ViT only.

Deliberate differences, documented in stdlib/*.cam and handled here:
- Eigen-CAM / Eigen-Grad-CAM / eigen_smooth: pytorch-grad-cam's SVD sign is arbitrary; camc's
  pc1 fixes it (the projection correlates non-negatively with sum[k] of its argument,
  stdlib/eigencam.cam). `camc_sign()` patches pytorch-grad-cam's get_2d_projection to apply
  that rule, everything else unchanged.
- FEM: none (stdlib/fem.cam: k=2, population std, as the library).
- Ablation-CAM: none; camc.torch.ablation_scores reproduces the library's AblationLayer,
  including its ablation value min - (j+1)*1e7 for the j-th channel of a forward batch when
  the minimum activation is not 0 (the ViT's LayerNorm output).
- A layer followed by an in-place op (test_layer_followed_by_an_inplace_relu): on the CPU
  pytorch-grad-cam reads the overwritten tensor; its reference runs without in-place ReLUs.
- ShapleyCAM: pytorch-grad-cam cannot do two layers, nor a reshape_transform; camc is checked
  there against its own program on the same tensors only.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import unittest
from pathlib import Path
from unittest import mock

os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's Score/Ablation progress bars

import numpy as np
import torch

torch.set_num_threads(int(os.environ.get("CAMC_TEST_THREADS", "1")))

sys.path.insert(0, str(Path(__file__).resolve().parent))

import models  # noqa: E402

import camc  # noqa: E402
from camc.torch import CAM, ClassifierOutputTarget, LayerTap, aggregate_layers  # noqa: E402

try:
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.ablation_layer import AblationLayerVit
    from pytorch_grad_cam.utils import model_targets as pgc_targets
    from pytorch_grad_cam.utils import svd_on_activations
except ImportError:  # pragma: no cover
    pgc = None

TOL = 1e-4
ROOT = Path(__file__).resolve().parents[2]

REFERENCE = {} if pgc is None else {
    "gradcam": pgc.GradCAM,
    "gradcampp": pgc.GradCAMPlusPlus,
    "xgradcam": pgc.XGradCAM,
    "hirescam": pgc.HiResCAM,
    "layercam": pgc.LayerCAM,
    "gradcam_elementwise": pgc.GradCAMElementWise,
    "eigencam": pgc.EigenCAM,
    "eigengradcam": pgc.EigenGradCAM,
    "fem": pgc.FEM,
    "scorecam": pgc.ScoreCAM,
    "ablationcam": pgc.AblationCAM,
    "shapleycam": pgc.ShapleyCAM,
}
GRADIENT_METHODS = ["gradcam", "gradcampp", "xgradcam", "hirescam", "layercam", "gradcam_elementwise",
                    "eigengradcam"]
ACTIVATION_METHODS = ["eigencam", "fem"]
PERTURBATION_METHODS = ["scorecam", "ablationcam"]


def _signed_projection(activation_batch):
    """pytorch-grad-cam's get_2d_projection with camc's sign rule: each image's projection is
    negated when its dot product with sum over k of the argument is negative."""
    projections = svd_on_activations.get_2d_projection(activation_batch)  # the module's own, unpatched
    batch = np.nan_to_num(np.asarray(activation_batch, dtype=np.float64))
    for i in range(projections.shape[0]):
        if float((projections[i].astype(np.float64) * batch[i].sum(axis=0)).sum()) < 0:
            projections[i] = -projections[i]
    return projections


@contextlib.contextmanager
def camc_sign():
    """Patches get_2d_projection in every pytorch-grad-cam module that imported it."""
    modules = ["eigen_cam", "eigen_grad_cam", "base_cam", "layer_cam", "hirescam", "grad_cam_elementwise"]
    with contextlib.ExitStack() as stack:
        for name in modules:
            stack.enter_context(mock.patch(f"pytorch_grad_cam.{name}.get_2d_projection", _signed_projection))
        yield


def reference(method, model, layers, x, targets, reshape_transform=None, aug_smooth=False, eigen_smooth=False,
              **kwargs):
    """pytorch-grad-cam's maps as a tensor; `targets` are ints (converted to its targets) or
    its target objects."""
    if targets is not None:
        targets = [pgc_targets.ClassifierOutputTarget(t) if isinstance(t, int) else t for t in targets]
    with camc_sign(), contextlib.redirect_stdout(io.StringIO()):  # HiResCAM prints a warning
        cam = REFERENCE[method](model, layers, reshape_transform=reshape_transform, **kwargs)
        try:
            out = cam(x, targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
        finally:
            cam.activations_and_grads.release()
    return torch.from_numpy(out)


def ours(method, model, layers, x, targets, reshape_transform=None, **call):
    with CAM(model, layers, program=method, reshape_transform=reshape_transform) as cam:
        return cam(x, targets, **call)


@unittest.skipIf(pgc is None, "pytorch-grad-cam (grad-cam==1.5.7) is not installed")
class MatchesPytorchGradCam(unittest.TestCase):
    """Every method pytorch-grad-cam also has, on four models, one and two target layers."""

    def check(self, method, model, layers, x, targets=None, reshape_transform=None, ref_kwargs=None,
              ours_targets="same", **call):
        expected = reference(method, model, layers, x, targets, reshape_transform, **call, **(ref_kwargs or {}))
        given = targets if ours_targets == "same" else ours_targets
        got = ours(method, model, layers, x, given, reshape_transform, **call)
        self.assertEqual(got.dtype, torch.float32)
        self.assertEqual(tuple(got.shape), tuple(expected.shape))
        self.assertEqual(got.device, x.device)
        err = float((got - expected).abs().max())
        self.assertLessEqual(err, TOL, f"{method}: max abs difference {err:.3g}")
        # not a trivial map: something to compare
        self.assertGreater(float(expected.max()), 0.5, f"{method}: the reference map is flat")
        return got

    # -- the demo CNN --------------------------------------------------------------------------

    def test_demo_cnn_every_method(self):
        model, x = models.demo_model(), models.demo_images(2)
        layers = [model.features.relu4]
        for method in GRADIENT_METHODS + ACTIVATION_METHODS + PERTURBATION_METHODS:
            with self.subTest(method=method):
                self.check(method, model, layers, x)
        # ShapleyCAM: with logit targets the Hessian of this ReLU/linear head is 0 (H = 0), so
        # explain softmax probabilities, where H is not.
        soft = [pgc_targets.ClassifierOutputSoftmaxTarget(c) for c in (3, 7)]
        self.check("shapleycam", model, layers, x, soft)
        self.check("shapleycam", model, layers, x, [3, 7])

    def test_demo_cnn_two_layers(self):
        model, x = models.demo_model(), models.demo_images(2)
        layers = [model.features.relu3, model.features.relu4]
        for method in GRADIENT_METHODS + ACTIVATION_METHODS + PERTURBATION_METHODS:
            with self.subTest(method=method):
                self.check(method, model, layers, x, [2, 5])
        # pytorch-grad-cam's ShapleyCAM cannot do two layers (its first Hessian-vector product
        # frees the graph: "Trying to backward through the graph a second time"); camc can.
        maps = ours("shapleycam", model, layers, x, [2, 5])
        self.assertEqual(tuple(maps.shape), (2, 64, 64))

    def test_demo_cnn_targets_ints_objects_and_argmax(self):
        model, x = models.demo_model(), models.demo_images(2)
        layers = [model.features.relu4]
        argmax = model(x).argmax(1).tolist()
        objects = [pgc_targets.ClassifierOutputTarget(c) for c in argmax]
        ours_objects = [ClassifierOutputTarget(c) for c in argmax]
        a = self.check("gradcampp", model, layers, x, None)
        b = self.check("gradcampp", model, layers, x, objects)
        c = ours("gradcampp", model, layers, x, argmax)
        d = ours("gradcampp", model, layers, x, ours_objects)
        for other in (b, c, d):
            torch.testing.assert_close(a, other, rtol=0, atol=0)

    def test_demo_cnn_aug_smooth_and_eigen_smooth(self):
        model, x = models.demo_model(), models.demo_images(2)
        layers = [model.features.relu4]
        for method in ("gradcam", "gradcampp", "layercam", "hirescam", "gradcam_elementwise", "scorecam",
                       "ablationcam", "shapleycam"):
            with self.subTest(method=method, eigen_smooth=True):
                self.check(method, model, layers, x, [1, 3], eigen_smooth=True)
        for method in ("gradcam", "eigencam"):
            with self.subTest(method=method, aug_smooth=True):
                self.check(method, model, layers, x, None, aug_smooth=True)

    def test_layer_followed_by_an_inplace_relu(self):
        # features.bn4 is followed by ReLU(inplace=True). camc copies bn4's own output and takes
        # the gradient with respect to it (autograd.grad cannot stop at a tensor changed in
        # place, so the hooks are read through a pass to the leaves). pytorch-grad-cam on the
        # CPU keeps the output tensor itself, which the ReLU then overwrites (on a GPU `.cpu()`
        # copies it first), so its reference runs on a copy of the model without in-place ReLU.
        import copy

        model, x = models.demo_model(), models.demo_images(2)
        plain = copy.deepcopy(model)
        for m in plain.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        soft = [pgc_targets.ClassifierOutputSoftmaxTarget(c) for c in (1, 3)]
        for method, targets in (("gradcam", [1, 3]), ("hirescam", [1, 3]), ("scorecam", [1, 3]),
                                ("shapleycam", soft)):
            with self.subTest(method=method):
                expected = reference(method, plain, [plain.features.bn4], x, targets)
                got = ours(method, model, [model.features.bn4], x, targets)
                self.assertLessEqual(float((got - expected).abs().max()), TOL)

    # -- torchvision models --------------------------------------------------------------------

    def test_resnet18(self):
        model, x = models.resnet18(), models.images(2, 64)
        for method in GRADIENT_METHODS + ACTIVATION_METHODS + ["shapleycam"]:
            # FEM's k-sigma threshold is never exceeded on layer4's 2 x 2 maps (at most 1.5
            # sigma with 4 values): both give 0 there, so compare it on layer3 (4 x 4).
            layer = model.layer3[-1] if method == "fem" else model.layer4[-1]
            with self.subTest(method=method, layers=1):
                self.check(method, model, [layer], x, [1, 500])
        for method in ("gradcam", "gradcampp", "eigencam"):
            with self.subTest(method=method, layers=2):
                self.check(method, model, [model.layer3[-1], model.layer4[-1]], x, None)
        with self.subTest(eigen_smooth="xgradcam"):
            self.check("xgradcam", model, [model.layer4[-1]], x, [1, 500], eigen_smooth=True)

    def test_vgg11(self):
        model, x = models.vgg11(), models.images(2, 64)
        # features[19] is the last ReLU (4 x 4 at 64 px), features[14] the one before (8 x 8).
        for method in GRADIENT_METHODS + ACTIVATION_METHODS:
            with self.subTest(method=method, layers=1):
                self.check(method, model, [model.features[19]], x, [7, 900])
        for method in ("gradcam", "layercam", "fem"):
            with self.subTest(method=method, layers=2):
                self.check(method, model, [model.features[14], model.features[19]], x, [7, 900])

    # -- a tiny ViT with reshape_transform -----------------------------------------------------

    def test_tiny_vit(self):
        model, x = models.tiny_vit(), models.images(2, 32)
        layers = [model.blocks[-1].norm1]
        rt = models.vit_reshape_transform
        targets = [pgc_targets.ClassifierOutputTarget(c) for c in (4, 9)]
        for method in GRADIENT_METHODS + ACTIVATION_METHODS + ["scorecam"]:
            with self.subTest(method=method):
                self.check(method, model, layers, x, targets, rt)
        # Ablation-CAM on tokens: pytorch-grad-cam needs AblationLayerVit (channels on the last
        # axis); camc ablates the last axis whenever a reshape_transform is given.
        with self.subTest(method="ablationcam"):
            self.check("ablationcam", model, layers, x, targets, rt,
                       ref_kwargs={"ablation_layer": AblationLayerVit()})
        with self.subTest(layers=2):
            self.check("gradcam", model, [model.blocks[0].norm1, model.blocks[-1].norm1], x, [4, 9], rt)

    def test_tiny_vit_shapleycam_runs(self):
        # pytorch-grad-cam's ShapleyCAM does not apply reshape_transform to the activations it
        # weights (BaseCAM.get_cam_image gets the raw tokens: "Invalid activation shape"), so
        # there is no reference; camc's map equals its own raw program on the reshaped tensors.
        model, x = models.tiny_vit(), models.images(2, 32)
        layers = [model.blocks[-1].norm1]
        rt = models.vit_reshape_transform
        maps = ours("shapleycam", model, layers, x, [4, 9], rt)
        tap = LayerTap(layers[0])
        try:
            from camc.torch import hessian_vector_product

            res = hessian_vector_product(model, tap, x, [4, 9])
            a, g, h = rt(tap.activation), rt(tap.gradient), rt(res.hvp[0])
        finally:
            tap.close()
        self.assertGreater(float(h.abs().max()), 0)  # attention / LayerNorm: a real Hessian
        expected = camc.compile("shapleycam")(A=a.contiguous(), G=g.contiguous(), H=h.contiguous(), size=(32, 32))
        torch.testing.assert_close(maps, torch.as_tensor(expected), rtol=0, atol=1e-6)

    # -- the original CAM (no pytorch-grad-cam equivalent) -------------------------------------

    def test_fc_cam_uses_the_classifier_row(self):
        model, x = models.demo_model(), models.demo_images(2)
        layer = model.features.relu4
        maps = ours("fc_cam", model, [layer], x, [3, 8])
        tap = LayerTap(layer)
        try:
            with torch.no_grad():
                model(x)
            a = tap.activation
        finally:
            tap.close()
        w = model.fc.weight.detach()[[3, 8]].contiguous()
        expected = camc.compile("fc_cam")(A=a, W=w, size=(64, 64))
        torch.testing.assert_close(maps, torch.as_tensor(expected), rtol=0, atol=0)


class Errors(unittest.TestCase):
    def setUp(self):
        self.model, self.x = models.demo_model(), models.demo_images(2)

    def assert_error(self, kind, text, fn):
        with self.assertRaises(kind) as caught:
            fn()
        self.assertIsInstance(caught.exception, camc.Error)
        self.assertIn(text, str(caught.exception))
        return caught.exception

    def test_a_parameter_cam_cannot_provide(self):
        src = "cam masked(A: [k,h,w], M: [k,h,w]) = relu(sum[k](M * A))"
        self.assert_error(camc.InputError, "`M: [k,h,w]`",
                          lambda: CAM(self.model, [self.model.features.relu4], program=src))
        vit = models.tiny_vit()
        self.assert_error(camc.InputError, "`W`", lambda: ours(
            "fc_cam", vit, [vit.blocks[-1].norm1], models.images(1, 32), [1], models.vit_reshape_transform))
        self.assert_error(camc.InputError, "scalars", lambda: CAM(
            self.model, [self.model.features.relu4], program="gradcampp", scalars={"alpha": 1.0}))
        # a scalar without a default
        src = "cam scaled(A: [k,h,w], s: []) = s * relu(sum[k](A))"
        with CAM(self.model, [self.model.features.relu4], program=src) as cam:
            self.assert_error(camc.InputError, "`s", lambda: cam(self.x))
        with CAM(self.model, [self.model.features.relu4], program=src, scalars={"s": 2.0}) as cam:
            self.assertEqual(tuple(cam(self.x).shape), (2, 64, 64))

    def test_a_layer_that_never_runs(self):
        stray = torch.nn.Conv2d(3, 3, 1)
        with CAM(self.model, [stray]) as cam:
            self.assert_error(camc.InputError, "never ran", lambda: cam(self.x))
        self.assertEqual(len(stray._forward_hooks), 0)

    def test_a_non_tensor_model_output(self):
        class Wrapped(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return {"logits": self.inner(x)}

        wrapped = Wrapped(self.model)
        with CAM(wrapped, [self.model.features.relu4]) as cam:
            self.assert_error(camc.InputTypeError, "returns a dict", lambda: cam(self.x))

    def test_bad_targets_layers_and_options(self):
        layers = [self.model.features.relu4]
        with CAM(self.model, layers) as cam:
            self.assert_error(camc.InputError, "3 targets for 2 images", lambda: cam(self.x, [1, 2, 3]))
            self.assert_error(camc.InputError, "out of range", lambda: cam(self.x, [1, 99]))
            self.assert_error(camc.InputTypeError, "target 1", lambda: cam(self.x, [1, "cat"]))
        with CAM(self.model, [self.model.features]) as cam:  # a Sequential: fine, it is a tensor
            self.assertEqual(tuple(cam(self.x).shape), (2, 64, 64))
        with CAM(self.model, [self.model.fc]) as cam:  # 2-D output: not a map
            self.assert_error(camc.InputError, "not [n, k, h, w]", lambda: cam(self.x))
        with CAM(self.model, layers, program="fc_cam") as cam:
            # W needs a class per image: a target callable without `category`
            self.assert_error(camc.InputError, "class index", lambda: cam(self.x, [lambda o: o[1]] * 2))
        self.assert_error(camc.Error, "ratio_channels_to_ablate",
                          lambda: CAM(self.model, layers, "ablationcam", ratio_channels_to_ablate=0.5))
        src = "cam mine(A: [k,h,w]) = relu(sum[k](A))"
        with CAM(self.model, layers, program=src) as cam:
            self.assert_error(camc.Error, "pc1[k]", lambda: cam(self.x, eigen_smooth=True))
        self.assert_error(camc.ProgramError, "nosuchmethod", lambda: CAM(self.model, layers, "nosuchmethod"))
        self.assert_error(camc.InputTypeError, "Module", lambda: CAM(self.model, ["features.relu4"]))
        self.assert_error(camc.InputTypeError, "reshape_transform=", lambda: CAM(
            self.model, layers, models.vit_reshape_transform))


class Lifetime(unittest.TestCase):
    def test_hooks_removed_by_close_and_with(self):
        model = models.demo_model()
        layer = model.features.relu4
        x = models.demo_images(2)
        cam = CAM(model, [layer, model.features.relu3], program="gradcam")
        self.assertEqual(len(layer._forward_hooks), 1)
        cam(x)
        self.assertIn("gradcam", repr(cam))
        self.assertIn("features.relu4", repr(cam))
        self.assertIn("cpu", repr(cam))
        cam.close()
        cam.close()  # idempotent
        self.assertEqual(len(layer._forward_hooks), 0)
        self.assertEqual(len(model.features.relu3._forward_hooks), 0)
        self.assertIn("closed", repr(cam))
        with self.assertRaises(camc.Error):
            cam(x)
        with CAM(model, [layer], program="scorecam") as cam:
            self.assertEqual(len(layer._forward_hooks), 1)
            cam(x)
        self.assertEqual(len(layer._forward_hooks), 0)
        for m in model.modules():
            self.assertEqual(len(m._forward_hooks), 0)
            self.assertEqual(len(m._backward_hooks), 0)

    def test_hooks_removed_when_collected_and_idle_between_calls(self):
        model = models.demo_model()
        layer = model.features.relu4
        cam = CAM(model, [layer])
        with torch.no_grad():
            model(models.demo_images(1))  # the model used between calls: nothing recorded
        self.assertIsNone(cam._taps[0].activation)
        del cam
        self.assertEqual(len(layer._forward_hooks), 0)

    def test_no_tensor_of_a_call_is_kept(self):
        model = models.demo_model()
        with CAM(model, [model.features.relu4], program="gradcam") as cam:
            cam(models.demo_images(2))
            tap = cam._taps[0]
            self.assertIsNone(tap.activation)
            self.assertIsNone(tap.gradient)
            self.assertIsNone(tap.output)
            self.assertFalse(cam.outputs.requires_grad)

    def test_import_camc_does_not_import_torch(self):
        code = "import sys, camc; camc.compile('gradcam'); assert 'torch' not in sys.modules; " \
               "import camc.torch; assert 'torch' in sys.modules"
        env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
        subprocess.run([sys.executable, "-c", code], check=True, env=env)


class Aggregation(unittest.TestCase):
    def test_aggregate_layers_is_pytorch_grad_cams(self):
        if pgc is None:
            self.skipTest("pytorch-grad-cam is not installed")
        from pytorch_grad_cam.utils.image import scale_cam_image

        rng = np.random.default_rng(0)
        raw = [np.maximum(rng.standard_normal((2, 4, 4)), 0).astype(np.float32),
               np.maximum(rng.standard_normal((2, 8, 8)), 0).astype(np.float32)]
        per_layer = [scale_cam_image(r, (32, 32))[:, None] for r in raw]
        expected = scale_cam_image(np.maximum(np.concatenate(per_layer, 1), 0).mean(1))
        got = aggregate_layers([torch.from_numpy(r) for r in raw], (32, 32))
        self.assertLessEqual(float(np.abs(got.numpy() - expected).max()), 1e-6)


@unittest.skipIf(pgc is None, "pytorch-grad-cam (grad-cam==1.5.7) is not installed")
class Overlay(unittest.TestCase):
    def test_show_cam_on_image_equals_pytorch_grad_cams(self):
        import cv2
        from pytorch_grad_cam.utils.image import show_cam_on_image

        rng = np.random.default_rng(0)
        img = rng.random((16, 16, 3), dtype=np.float32)
        ramp = (np.arange(256, dtype=np.float32) / 255).reshape(16, 16)  # every colormap entry
        for mask in (ramp, rng.random((16, 16), dtype=np.float32)):
            for use_rgb in (False, True):
                for weight in (0.5, 0.2, 1.0, 0.0):
                    expected = show_cam_on_image(img, mask, use_rgb=use_rgb, image_weight=weight)
                    got = camc.show_cam_on_image(img, mask, use_rgb=use_rgb, image_weight=weight)
                    self.assertEqual(got.dtype, np.uint8)
                    np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(
            camc.show_cam_on_image(img, ramp, colormap=cv2.COLORMAP_JET),
            camc.show_cam_on_image(img, ramp, colormap="jet"))
        lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO).reshape(256, 3)
        np.testing.assert_array_equal(
            camc.show_cam_on_image(img, ramp, colormap=lut),
            show_cam_on_image(img, ramp, colormap=cv2.COLORMAP_TURBO))
        with self.assertRaises(camc.InputError):
            camc.show_cam_on_image(img * 2, ramp)
        with self.assertRaises(camc.InputError):
            camc.show_cam_on_image(img, ramp, image_weight=1.5)
        with self.assertRaises(camc.InputError):
            camc.show_cam_on_image(img, ramp, colormap=cv2.COLORMAP_HOT)
        with self.assertRaises(camc.InputError):
            camc.show_cam_on_image(img, ramp[None])


if __name__ == "__main__":
    unittest.main()

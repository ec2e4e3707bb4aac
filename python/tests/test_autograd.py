"""Compiled programs in torch's autograd: gradients from camc's backward kernels equal torch
autograd through independent torch implementations of the same formulas (written here, in
float64), for A, G, a learnable per-image weight vector and a shared classifier head, with and
without the post-processing; on CPU, and on CUDA where a GPU is present.

Run: PYTHONPATH=python .venv-py/bin/python -m unittest python/tests/test_autograd.py
"""

from __future__ import annotations

import unittest

import torch
import torch.nn.functional as F

import camc

TOLERANCE = dict(rtol=1e-5, atol=1e-6)


def gradcampp(A, G, eps=1e-6):
    g2 = G ** 2
    g3 = g2 * G
    alpha = torch.where(G != 0, g2 / (2 * g2 + A.sum((2, 3), keepdim=True) * g3 + eps), torch.zeros_like(G))
    weights = (alpha * torch.relu(G)).sum((2, 3), keepdim=True)
    return torch.relu((weights * A).sum(1))


def softmax_weighted(A, w):
    return torch.relu((torch.softmax(w, dim=1)[:, :, None, None] * A).sum(1))


def reciprocam(A, head_weight, head_bias, target):
    n, k, h, w = A.shape
    logits = torch.einsum("ck,nkp->npc", head_weight, A.reshape(n, k, h * w)) / (h * w) + head_bias
    p = torch.softmax(logits, dim=-1).gather(2, target.view(n, 1, 1).expand(n, h * w, 1)).squeeze(2)
    low = p.amin(1, keepdim=True)
    span = p.amax(1, keepdim=True) - low
    return torch.where(span > 0, (p - low) / span, torch.zeros_like(p)).reshape(n, h, w)


def postprocess(raw, size):
    def minmax(x):
        x = x - x.amin((1, 2), keepdim=True)
        return x / (1e-7 + x.amax((1, 2), keepdim=True))
    return minmax(F.interpolate(minmax(raw)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0])


def gradients(fn, tensors, out_grad):
    """d Σ out_grad·fn(tensors) / d each tensor that requires a gradient."""
    maps = fn(**tensors)
    (maps * out_grad).sum().backward()
    return maps.detach(), {name: t.grad for name, t in tensors.items() if t.requires_grad}


def leaves(tensors, dtype, wanted):
    return {name: (t.to(dtype).detach().requires_grad_(name in wanted) if t.is_floating_point() else t)
            for name, t in tensors.items()}


class AutogradAgainstTorch(unittest.TestCase):
    def compare(self, program, reference, tensors, wanted, device="cpu", size=None):
        tensors = {name: t.to(device) for name, t in tensors.items()}
        prog = camc.compile(program)
        shape = reference(**leaves(tensors, torch.float64, ())).shape
        out_shape = shape if size is None else (shape[0], *size)
        out_grad = torch.randn(out_shape, generator=torch.Generator().manual_seed(3)).to(device)
        if size is None:
            got_maps, got = gradients(lambda **t: prog(**t), leaves(tensors, torch.float32, wanted), out_grad)
            ref_maps, ref = gradients(reference, leaves(tensors, torch.float64, wanted), out_grad.double())
        else:
            got_maps, got = gradients(lambda **t: prog(size=size, **t), leaves(tensors, torch.float32, wanted), out_grad)
            ref_maps, ref = gradients(lambda **t: postprocess(reference(**t), size),
                                      leaves(tensors, torch.float64, wanted), out_grad.double())
            # The maps with autograd equal the fused kernel's post-processed maps.
            with torch.no_grad():
                fused = prog(size=size, **tensors)
            torch.testing.assert_close(got_maps, fused, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got_maps.double(), ref_maps, rtol=1e-5, atol=1e-5)
        self.assertEqual(set(got), set(wanted))
        for name in wanted:
            scale = float(ref[name].abs().max())
            torch.testing.assert_close(got[name].double(), ref[name], rtol=1e-5, atol=1e-6 * max(1.0, scale),
                                       msg=lambda m, name=name: f"d/d{name}: {m}")

    def inputs(self):
        g = torch.Generator().manual_seed(0)
        return {"A": torch.rand(3, 6, 5, 4, generator=g), "G": torch.randn(3, 6, 5, 4, generator=g)}

    def test_gradcampp_a_and_g(self):
        self.compare("gradcampp", gradcampp, self.inputs(), ("A", "G"))

    def test_only_what_requires_a_gradient_is_computed(self):
        self.compare("gradcampp", gradcampp, self.inputs(), ("G",))

    def test_through_the_post_processing(self):
        self.compare("gradcampp", gradcampp, self.inputs(), ("A", "G"), size=(12, 9))

    def test_a_learnable_weight_vector(self):
        source = "cam weighted(A: [k,h,w], w: [k]) = relu(sum[k](softmax[k](w) * A))"
        g = torch.Generator().manual_seed(1)
        tensors = {"A": torch.rand(2, 6, 4, 4, generator=g), "w": torch.randn(2, 6, generator=g)}
        self.compare(source, softmax_weighted, tensors, ("w", "A"))

    def test_a_head_shared_by_all_images(self):
        g = torch.Generator().manual_seed(2)
        tensors = {
            "A": torch.rand(3, 8, 3, 3, generator=g),
            "head_weight": torch.randn(10, 8, generator=g),
            "head_bias": torch.randn(10, generator=g),
            "target": torch.tensor([1, 7, 3]),
        }
        self.compare("reciprocam", reciprocam, tensors, ("A", "head_weight", "head_bias"))

    def test_no_gradient_no_graph(self):
        A = torch.rand(2, 3, 4, 4)
        maps = camc.compile("gradcam")(A=A, G=A)
        self.assertFalse(maps.requires_grad)

    def test_pc1_has_no_gradient(self):
        A = torch.rand(2, 3, 4, 4, requires_grad=True)
        maps = camc.compile("eigencam")(A=A)
        with self.assertRaisesRegex(camc.InputError, "`pc1` is not differentiable"):
            maps.sum().backward()

    @unittest.skipUnless(torch.cuda.is_available(), "no CUDA GPU here")
    def test_on_cuda(self):
        self.compare("gradcampp", gradcampp, self.inputs(), ("A", "G"), device="cuda")
        self.compare("gradcampp", gradcampp, self.inputs(), ("A",), device="cuda", size=(12, 9))


if __name__ == "__main__":
    unittest.main()

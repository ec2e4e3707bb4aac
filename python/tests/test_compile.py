"""camc.compile on NumPy arrays equals `camc run` on a cache holding the same numbers, and bad
inputs raise camc.Error subclasses. Run: python -m unittest discover -s python/tests"""

import os
import subprocess
import tempfile
import unittest
from pathlib import Path

import numpy as np

import camc

ROOT = Path(__file__).resolve().parents[2]


def camc_binary():
    for build in ("release", "debug"):
        path = ROOT / "target" / build / "camc"
        if path.exists():
            return str(path)
    raise unittest.SkipTest("no target/{release,debug}/camc: cargo build first")


def cli_maps(method, tensors, extra):
    """`camc run METHOD` on an .npy cache of `tensors`; the maps it writes."""
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        for name, value in tensors.items():
            np.save(cache / f"{name}.npy", value)
        out = Path(tmp) / "maps.npy"
        subprocess.run([camc_binary(), "run", method, "--cache", str(cache), "-o", str(out), *extra],
                       check=True, capture_output=True)
        return np.load(out)


class CompileTest(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(0)
        self.a = rng.random((3, 4, 5, 6), dtype=np.float32)
        self.g = rng.standard_normal((3, 4, 5, 6)).astype(np.float32)

    def test_raw_and_processed_maps_equal_the_cli(self):
        for method in ("gradcam", "gradcampp", "xgradcam", "layercam"):
            prog = camc.compile(method)
            raw = prog(A=self.a, G=self.g)
            np.testing.assert_array_equal(raw, cli_maps(method, {"A": self.a, "G": self.g}, ["--raw"]))
            maps = prog(A=self.a, G=self.g, size=(10, 12))
            np.testing.assert_array_equal(
                maps, cli_maps(method, {"A": self.a, "G": self.g}, ["--size", "10,12"]))

    def test_gradcam_by_hand(self):
        raw = camc.compile("gradcam")(A=self.a, G=self.g)
        weights = self.g.mean(axis=(2, 3))
        expected = np.maximum((weights[:, :, None, None] * self.a).sum(1), 0)
        np.testing.assert_allclose(raw, expected, atol=1e-6)

    def test_f16_inputs_are_read_as_the_cli_reads_them(self):
        a, g = self.a.astype(np.float16), self.g.astype(np.float16)
        np.testing.assert_array_equal(
            camc.compile("gradcam")(A=a, G=g), cli_maps("gradcam", {"A": a, "G": g}, ["--raw"]))

    def test_params_scalars_source_text_and_emit(self):
        prog = camc.compile("gradcampp")
        self.assertEqual(prog.params[:2], [("A", "[k,h,w]"), ("G", "[k,h,w]")])
        source = camc.compile("cam twice(A: [k,h,w], s: [] = 1.0) = s * sum[k](A)")
        np.testing.assert_allclose(source(A=self.a, s=2.0), 2 * self.a.sum(1), rtol=1e-6)
        self.assertIn("kernel gradcampp", prog.emit("ir"))

    def test_bad_inputs_raise_camc_errors(self):
        prog = camc.compile("gradcam")
        cases = [
            (dict(A=self.a), camc.InputError, "missing tensor `G`"),
            (dict(A=self.a[0], G=self.g[0]), camc.InputError, "[n,k,h,w]"),
            (dict(A=self.a, G=self.g[:, :, :, :3]), camc.InputError, "w = 3"),
            (dict(A=self.a, G="x"), camc.InputTypeError, "float32 or float16"),
            (dict(A=self.a, G=self.g.astype(np.float64)), camc.InputTypeError, "float32 or float16"),
            (dict(A=self.a, G=np.asfortranarray(self.g)), camc.InputError, "contiguous"),
            (dict(A=self.a, G=self.g, B=self.g), camc.InputError, "not a parameter"),
            (dict(A=self.a, G=self.g, size=(7,)), camc.InputError, "does not fit"),
        ]
        for kwargs, kind, text in cases:
            with self.assertRaises(kind) as caught:
                prog(**kwargs)
            self.assertIn(text, str(caught.exception))
            self.assertIsInstance(caught.exception, camc.Error)
        with self.assertRaises(camc.ProgramError) as caught:
            camc.compile("cam broken(A: [k,h,w]) = sum[k](B)")
        self.assertIn("unknown name `B`", str(caught.exception))
        with self.assertRaises(camc.ProgramError):
            camc.compile("nosuchmethod")


if __name__ == "__main__":
    unittest.main()

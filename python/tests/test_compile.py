"""camc.compile on NumPy arrays and torch CPU tensors equals `camc run --backend cpu` on an .npy
cache holding the same numbers, bit for bit; `emit` equals `camc emit`; programs are cached;
bad inputs raise camc.Error subclasses with the CLI's messages, and nothing panics.
Run: PYTHONPATH=python python -m unittest discover -s python/tests -p 'test_compile*'"""

import os
import sys
import tempfile
import unittest
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import camc  # noqa: E402
from _cli import ROOT, cli, cli_error, cli_maps  # noqa: E402

try:
    import torch
except ImportError:  # the NumPy tests run without torch
    torch = None

needs_torch = unittest.skipIf(torch is None, "torch is not installed")

VOLUME = """
# A 3-D program: the inputs have d, so the map is [d,h,w].
cam vol(A: [k,d,h,w], G: [k,d,h,w]) = relu(sum[k](mean[d,h,w](G) * A))
cam vol_slices(A: [k,d,h,w], G: [k,d,h,w], eps: [] = 1e-3) = normalize[d,h,w](sum[k](mean[h,w](G) * A) + eps)
"""

TYPE_ERRORS = """# two mistakes, as docs/language.md's example
cam mygradcam(A: [k,h,w], G: [k,h,w]) = relu(mean[h,w](G) * A)

cam layer(A: [k,h,w], G: [k,h,w]) = sum[k](Relu(G) * A)
"""


def bits(x):
    """The bytes of an array or tensor, to check that it was not written to."""
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.view(torch.int16)
        return x.numpy().tobytes()
    return np.asarray(x).tobytes()


def assert_bitwise_equal(test, got, expected, what=""):
    got, expected = np.asarray(got), np.asarray(expected)
    test.assertEqual(got.shape, expected.shape, what)
    test.assertEqual(got.dtype, np.float32, what)
    if got.tobytes() != expected.tobytes():
        diff = np.argwhere(got.view(np.uint32) != expected.view(np.uint32))
        where = tuple(diff[0])
        test.fail(f"{what}: {len(diff)} values differ, first at {where}: got {got[where]!r}, expected {expected[where]!r}")


class Data:
    @staticmethod
    def make(shape=(3, 4, 5, 6), seed=0):
        rng = np.random.default_rng(seed)
        a = rng.random(shape, dtype=np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        return a, g


class CompileTest(unittest.TestCase):
    def setUp(self):
        self.a, self.g = Data.make()

    def test_raw_and_processed_maps_equal_the_cli(self):
        for method in ("gradcam", "gradcampp", "xgradcam", "layercam", "eigencam"):
            prog = camc.compile(method)
            tensors = {name: value for name, value in (("A", self.a), ("G", self.g)) if name in dict(prog.params)}
            raw = prog(**tensors)
            assert_bitwise_equal(self, raw, cli_maps(method, tensors, ["--raw"]), f"{method} raw")
            maps = prog(**tensors, size=(10, 12))
            assert_bitwise_equal(self, maps, cli_maps(method, tensors, ["--size", "10,12"]), f"{method} size")

    def test_gradcam_by_hand(self):
        raw = camc.compile("gradcam")(A=self.a, G=self.g)
        weights = self.g.mean(axis=(2, 3))
        expected = np.maximum((weights[:, :, None, None] * self.a).sum(1), 0)
        np.testing.assert_allclose(raw, expected, atol=1e-6)

    def test_f16_inputs_are_read_as_the_cli_reads_them(self):
        a, g = self.a.astype(np.float16), self.g.astype(np.float16)
        assert_bitwise_equal(self, camc.compile("gradcam")(A=a, G=g), cli_maps("gradcam", {"A": a, "G": g}, ["--raw"]))
        assert_bitwise_equal(self, camc.compile("gradcampp")(A=a, G=g, size=(9, 7)),
                             cli_maps("gradcampp", {"A": a, "G": g}, ["--size", "9,7"]))

    def test_params_scalars_source_text_and_emit(self):
        prog = camc.compile("gradcampp")
        self.assertEqual(prog.params, [("A", "[k,h,w]"), ("G", "[k,h,w]"), ("eps", "[]")])
        self.assertEqual(prog.name, "gradcampp")
        source = camc.compile("cam twice(A: [k,h,w], s: [] = 1.0) = s * sum[k](A)")
        np.testing.assert_allclose(source(A=self.a, s=2.0), 2 * self.a.sum(1), rtol=1e-6)
        self.assertIn("kernel gradcampp", prog.emit("ir"))

    def test_scalar_keywords_equal_cli_set(self):
        prog = camc.compile("gradcampp")
        tensors = {"A": self.a, "G": self.g}
        for eps in (1e-5, 0.5, 3):
            assert_bitwise_equal(self, prog(**tensors, eps=eps), cli_maps("gradcampp", tensors, ["--raw", "--set", f"eps={eps}"]),
                                 f"eps={eps}")
        assert_bitwise_equal(self, prog(**tensors, eps=np.float32(0.25), size=(8, 8)),
                             cli_maps("gradcampp", tensors, ["--size", "8,8", "--set", "eps=0.25"]))

    def test_every_declared_parameter_is_accepted(self):
        """A tensor parameter the body does not read (or that the optimizer removes) is still a
        parameter: `prog.params` lists it, so passing it is not an error (`camc run` ignores it)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "unused.cam"
            path.write_text("cam unused(A: [k,h,w], G: [k,h,w]) = sum[k](A)\n")
            prog = camc.compile(str(path))
            self.assertEqual(prog.params, [("A", "[k,h,w]"), ("G", "[k,h,w]")])
            expected = cli_maps(str(path), {"A": self.a, "G": self.g}, ["--raw"])
            assert_bitwise_equal(self, prog(A=self.a, G=self.g), expected)

    def test_an_unused_binding_is_a_warning_not_an_error(self):
        prog = camc.compile("cam spare(A: [k,h,w]) {\n    let unused = A * 2\n    sum[k](A)\n}\n")
        np.testing.assert_allclose(prog(A=self.a), self.a.sum(1), rtol=1e-6)

    def test_numpy_in_numpy_out(self):
        maps = camc.compile("gradcam")(A=self.a, G=self.g, size=(7, 7))
        self.assertIs(type(maps), np.ndarray)
        self.assertEqual(maps.dtype, np.float32)
        self.assertEqual(maps.shape, (3, 7, 7))
        self.assertTrue(maps.flags.c_contiguous)
        self.assertFalse(np.shares_memory(maps, self.a) or np.shares_memory(maps, self.g))

    def test_an_empty_batch_gives_no_maps(self):
        prog = camc.compile("gradcam")
        self.assertEqual(prog(A=self.a[:0], G=self.g[:0]).shape, (0, 5, 6))
        self.assertEqual(prog(A=self.a[:0], G=self.g[:0], size=(8, 9)).shape, (0, 8, 9))

    def test_nonfinite_values_are_set_to_zero_with_a_warning(self):
        g = self.g.copy()
        g[1, :, 2, 3] = np.nan
        prog = camc.compile("hirescam")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw = prog(A=self.a, G=g)
        self.assertTrue(any(issubclass(w.category, RuntimeWarning) and "non-finite" in str(w.message) for w in caught))
        self.assertEqual(raw[1, 2, 3], 0.0)
        self.assertTrue(np.isfinite(raw).all())
        assert_bitwise_equal(self, raw, cli_maps("hirescam", {"A": self.a, "G": g}, ["--raw"]))


@needs_torch
class TorchCpuTest(unittest.TestCase):
    def setUp(self):
        self.a, self.g = Data.make()

    def check_torch_result(self, maps, shape):
        self.assertIsInstance(maps, torch.Tensor)
        self.assertEqual(maps.device.type, "cpu")
        self.assertEqual(maps.dtype, torch.float32)
        self.assertEqual(tuple(maps.shape), shape)

    def test_f32_and_f16_tensors_equal_the_cli_bit_for_bit(self):
        for dtype in (torch.float32, torch.float16):
            a, g = torch.from_numpy(self.a).to(dtype), torch.from_numpy(self.g).to(dtype)
            numbers = {"A": a.numpy(), "G": g.numpy()}
            for method in ("gradcam", "gradcampp", "layercam"):
                prog = camc.compile(method)
                raw = prog(A=a, G=g)
                self.check_torch_result(raw, (3, 5, 6))
                assert_bitwise_equal(self, raw.numpy(), cli_maps(method, numbers, ["--raw"]), f"{method} {dtype} raw")
                maps = prog(A=a, G=g, size=(11, 9))
                self.check_torch_result(maps, (3, 11, 9))
                assert_bitwise_equal(self, maps.numpy(), cli_maps(method, numbers, ["--size", "11,9"]), f"{method} {dtype}")

    def test_bf16_tensors_equal_the_cli_on_their_f32_values(self):
        a = torch.from_numpy(self.a).to(torch.bfloat16)
        g = torch.from_numpy(self.g).to(torch.bfloat16)
        widened = {"A": a.float().numpy(), "G": g.float().numpy()}
        for method in ("gradcam", "xgradcam"):
            prog = camc.compile(method)
            raw = prog(A=a, G=g)
            self.check_torch_result(raw, (3, 5, 6))
            assert_bitwise_equal(self, raw.numpy(), cli_maps(method, widened, ["--raw"]), f"{method} bf16 raw")
            maps = prog(A=a, G=g, size=(10, 12))
            self.check_torch_result(maps, (3, 10, 12))
            assert_bitwise_equal(self, maps.numpy(), cli_maps(method, widened, ["--size", "10,12"]), f"{method} bf16")
        # bf16 and f16 together: each input is read in its own type.
        h = torch.from_numpy(self.g).half()
        raw = camc.compile("gradcam")(A=a, G=h)
        assert_bitwise_equal(self, raw.numpy(), cli_maps("gradcam", {"A": widened["A"], "G": h.numpy()}, ["--raw"]))

    def test_torch_and_numpy_give_the_same_maps(self):
        prog = camc.compile("gradcampp")
        from_numpy = prog(A=self.a, G=self.g, eps=1e-4)
        from_torch = prog(A=torch.from_numpy(self.a), G=torch.from_numpy(self.g), eps=1e-4)
        assert_bitwise_equal(self, from_torch.numpy(), from_numpy)

    def test_tensors_that_require_grad_give_the_same_maps_in_the_autograd_graph(self):
        a = torch.from_numpy(self.a.copy()).requires_grad_()
        g = torch.from_numpy(self.g.copy())
        maps = camc.compile("gradcam")(A=a, G=g)
        self.assertTrue(maps.requires_grad)  # test_autograd.py checks the gradients
        self.assertIsNone(a.grad)
        assert_bitwise_equal(self, maps.detach().numpy(), camc.compile("gradcam")(A=self.a, G=self.g))
        with torch.no_grad():
            self.assertFalse(camc.compile("gradcam")(A=a, G=g).requires_grad)


class NoCopyTest(unittest.TestCase):
    """Inputs are read in place: never written to, never copied (a non-contiguous input is
    refused rather than copied), and contiguous views at an offset are read where they are."""

    def setUp(self):
        self.a, self.g = Data.make()

    def test_non_contiguous_inputs_are_refused_not_copied(self):
        prog = camc.compile("gradcam")
        big = np.concatenate([self.g, self.g], axis=3)
        for view in (np.asfortranarray(self.g), self.g[:, :, :, ::-1], big[:, :, :, :6]):
            self.assertFalse(view.flags.c_contiguous)
            with self.assertRaises(camc.InputError) as caught:
                prog(A=self.a, G=view)
            self.assertIn("`G` is not contiguous", str(caught.exception))
        if torch is not None:
            for dtype in (torch.float32, torch.float16, torch.bfloat16):
                a, g = torch.from_numpy(self.a).to(dtype), torch.from_numpy(self.g).to(dtype)
                views = (g.transpose(2, 3).contiguous().transpose(2, 3),   # dense, strides permuted
                         torch.cat([g, g], dim=3)[:, :, :, :6],             # a slice with gaps
                         g.transpose(0, 1).contiguous().transpose(0, 1))
                for view in views:
                    self.assertEqual(view.shape, a.shape)
                    self.assertFalse(view.is_contiguous())
                    with self.assertRaises(camc.InputError) as caught:
                        prog(A=a, G=view)
                    self.assertIn("`G` is not contiguous", str(caught.exception))

    def test_inputs_are_not_modified(self):
        a, g = self.a.copy(), self.g.copy()
        g[0, 0, 0, 0] = np.nan  # the result's non-finite values are zeroed, the input's are not
        g[1, 2, 3, 4] = np.inf
        cases = [dict(A=a, G=g), dict(A=a.astype(np.float16), G=g.astype(np.float16))]
        if torch is not None:
            for dtype in (torch.float32, torch.float16, torch.bfloat16):
                cases.append(dict(A=torch.from_numpy(a).to(dtype), G=torch.from_numpy(g).to(dtype)))
        for kwargs in cases:
            before = {n: bits(v) for n, v in kwargs.items()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for method in ("gradcampp", "eigengradcam"):
                    camc.compile(method)(**kwargs)
                    camc.compile(method)(**kwargs, size=(9, 9))
            self.assertEqual({n: bits(v) for n, v in kwargs.items()}, before)

    def test_read_only_arrays_are_read(self):
        a, g = self.a.copy(), self.g.copy()
        a.flags.writeable = False
        g.flags.writeable = False
        assert_bitwise_equal(self, camc.compile("gradcam")(A=a, G=g), camc.compile("gradcam")(A=self.a, G=self.g))

    def test_contiguous_views_at_an_offset_are_read_in_place(self):
        big_a, big_g = Data.make((6, 4, 5, 6), seed=1)
        prog = camc.compile("gradcampp")
        expected = prog(A=big_a[2:5].copy(), G=big_g[2:5].copy())
        assert_bitwise_equal(self, prog(A=big_a[2:5], G=big_g[2:5]), expected)
        if torch is not None:
            ta, tg = torch.from_numpy(big_a), torch.from_numpy(big_g)
            self.assertNotEqual(ta[2:5].storage_offset(), 0)
            assert_bitwise_equal(self, prog(A=ta[2:5], G=tg[2:5]).numpy(), expected)
            # bf16 at an odd offset of its storage
            ba, bg = ta.bfloat16(), tg.bfloat16()
            assert_bitwise_equal(self, prog(A=ba[1:4], G=bg[1:4]).numpy(),
                                 prog(A=ba[1:4].float().numpy(), G=bg[1:4].float().numpy()))

    def test_the_result_shares_no_memory_with_the_inputs(self):
        maps = camc.compile("gradcam")(A=self.a, G=self.g)
        self.assertTrue(maps.flags.owndata or maps.base is not None)
        self.assertFalse(np.shares_memory(maps, self.a) or np.shares_memory(maps, self.g))
        if torch is not None:
            a, g = torch.from_numpy(self.a), torch.from_numpy(self.g)
            out = camc.compile("gradcam")(A=a, G=g)
            mine = out.untyped_storage().data_ptr()
            self.assertNotIn(mine, (a.untyped_storage().data_ptr(), g.untyped_storage().data_ptr()))

    def test_no_copy_of_the_inputs_is_made(self):
        """The peak resident memory of a call grows by far less than the inputs' size (Linux:
        /proc/self/clear_refs resets the peak)."""
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError as e:
            self.skipTest(f"cannot reset the peak RSS: {e}")

        def resident(field):
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
            raise AssertionError(field)

        shape = (1, 64, 256, 256)  # 16 MiB of f32 per input, 4 M values
        a = np.full(shape, 0.5, np.float32)
        g = np.full(shape, 0.25, np.float32)
        cases = {"numpy f32": dict(A=a, G=g)}
        if torch is not None:
            ta, tg = torch.from_numpy(a), torch.from_numpy(g)
            cases["torch f32"] = dict(A=ta, G=tg)
            cases["torch bf16"] = dict(A=ta.bfloat16(), G=tg.bfloat16())
        prog = camc.compile("gradcam")
        for what, kwargs in cases.items():
            input_bytes = sum(v.nbytes for v in kwargs.values())
            prog(**kwargs)  # compiles the kernel for these sizes
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            before = resident("VmRSS")
            maps = prog(**kwargs)
            grown = resident("VmHWM") - before
            self.assertEqual(float(maps[0, 0, 0]), 64 * 0.25 * 0.5)
            self.assertLess(grown, input_bytes // 4,
                            f"{what}: the peak memory grew by {grown} bytes for {input_bytes} bytes of inputs")


class IntegerTensorTest(unittest.TestCase):
    """Integer tensors are read as f32 (docs/cache.md): `target: []` without a default reads a
    per-image `[n]` tensor (e.g. the class index), `W: [k]` an `[n,k]` one. The language has no
    shared (image-less) tensors: a program cannot name `head.weight`, so there is nothing of
    that kind to test."""

    SOURCE = "cam scaled(A: [k,h,w], target: []) = (target + 1) * sum[k](A)\n"
    WEIGHTED = "cam weighted(A: [k,h,w], W: [k]) = sum[k](W * A)\n"

    def setUp(self):
        self.a, _ = Data.make()
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.scaled = Path(self.tmp.name) / "scaled.cam"
        self.scaled.write_text(self.SOURCE)
        self.weighted = Path(self.tmp.name) / "weighted.cam"
        self.weighted.write_text(self.WEIGHTED)

    def test_params_of_a_per_image_scalar(self):
        self.assertEqual(camc.compile(self.SOURCE).params, [("A", "[k,h,w]"), ("target", "[]")])

    def test_an_integer_target_tensor_equals_the_cli(self):
        target = np.array([0, 3, 7], np.int64)
        expected = cli_maps(str(self.scaled), {"A": self.a, "target": target}, ["--raw"])
        prog = camc.compile(str(self.scaled))
        tensors = [target, target.astype(np.int32)]
        if torch is not None:
            tensors += [torch.from_numpy(target), torch.from_numpy(target).int()]
        for t in tensors:
            a = torch.from_numpy(self.a) if torch is not None and isinstance(t, torch.Tensor) else self.a
            got = prog(A=a, target=t)
            assert_bitwise_equal(self, np.asarray(got), expected, f"target {type(t).__name__} {t.dtype}")
        expected = cli_maps(str(self.scaled), {"A": self.a, "target": target}, ["--size", "8,8"])
        assert_bitwise_equal(self, prog(A=self.a, target=target, size=(8, 8)), expected)

    def test_ablationcam_reads_a_logit_per_image(self):
        rng = np.random.default_rng(2)
        tensors = {"A": self.a, "ablation": rng.standard_normal((3, 4)).astype(np.float32),
                   "logit": np.array([2.0, -1.5, 4.0], np.float32)}
        prog = camc.compile("ablationcam")
        self.assertEqual(prog.params, [("A", "[k,h,w]"), ("ablation", "[k]"), ("logit", "[]")])
        assert_bitwise_equal(self, prog(**tensors), cli_maps("ablationcam", tensors, ["--raw"]))
        assert_bitwise_equal(self, prog(**tensors, size=(9, 9)), cli_maps("ablationcam", tensors, ["--size", "9,9"]))

    def test_a_per_image_scalar_given_a_number_equals_cli_set(self):
        expected = cli_maps(str(self.scaled), {"A": self.a}, ["--raw", "--set", "target=2"])
        assert_bitwise_equal(self, camc.compile(str(self.scaled))(A=self.a, target=2), expected)

    def test_a_per_image_scalar_tensor_of_the_wrong_shape(self):
        prog = camc.compile(str(self.scaled))
        with self.assertRaises(camc.InputError) as caught:
            prog(A=self.a, target=np.zeros((3, 1), np.int64))
        self.assertIn("[n]", str(caught.exception))
        with self.assertRaises(camc.InputError) as caught:
            prog(A=self.a, target=np.zeros(2, np.int64))
        self.assertIn("images", str(caught.exception))
        with self.assertRaises(camc.InputError) as caught:
            prog(A=self.a)
        self.assertIn("missing tensor `target`", str(caught.exception))

    def test_integer_channel_weights_equal_the_cli(self):
        w = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
        expected = cli_maps(str(self.weighted), {"A": self.a, "W": w}, ["--raw"])
        prog = camc.compile(str(self.weighted))
        assert_bitwise_equal(self, prog(A=self.a, W=w), expected)
        assert_bitwise_equal(self, prog(A=self.a, W=w.astype(np.int64)), expected)
        if torch is not None:
            assert_bitwise_equal(self, prog(A=torch.from_numpy(self.a), W=torch.from_numpy(w)).numpy(), expected)
        with self.assertRaises(camc.InputError) as caught:
            prog(A=self.a, W=w[0])
        self.assertIn("must be [n,k]", str(caught.exception))


class VolumeTest(unittest.TestCase):
    """3-D programs: `[n,k,d,h,w]` inputs, `[n,d,h,w]` maps."""

    def setUp(self):
        self.a, self.g = Data.make((2, 3, 4, 5, 6))
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.file = Path(self.tmp.name) / "volume.cam"
        self.file.write_text(VOLUME)

    def test_raw_and_processed_volumes_equal_the_cli(self):
        tensors = {"A": self.a, "G": self.g}
        for name in ("vol", "vol_slices"):
            program = f"{self.file}:{name}"
            prog = camc.compile(program)
            raw = prog(**tensors)
            self.assertEqual(raw.shape, (2, 4, 5, 6))
            assert_bitwise_equal(self, raw, cli_maps(program, tensors, ["--raw"]), f"{name} raw")
            for size in ((7, 8, 9), (8, 9)):
                maps = prog(**tensors, size=size)
                self.assertEqual(maps.shape, (2,) + ((4,) + size if len(size) == 2 else size))
                assert_bitwise_equal(self, maps, cli_maps(program, tensors, ["--size", ",".join(map(str, size))]),
                                     f"{name} size={size}")

    @needs_torch
    def test_torch_volumes_equal_the_cli(self):
        program = f"{self.file}:vol"
        prog = camc.compile(program)
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            a, g = torch.from_numpy(self.a).to(dtype), torch.from_numpy(self.g).to(dtype)
            numbers = {"A": a.float().numpy(), "G": g.float().numpy()} if dtype == torch.bfloat16 else {"A": a.numpy(), "G": g.numpy()}
            maps = prog(A=a, G=g, size=(3, 7, 7))
            self.assertEqual((maps.dtype, tuple(maps.shape)), (torch.float32, (2, 3, 7, 7)))
            assert_bitwise_equal(self, maps.numpy(), cli_maps(program, numbers, ["--size", "3,7,7"]), str(dtype))
            assert_bitwise_equal(self, prog(A=a, G=g).numpy(), cli_maps(program, numbers, ["--raw"]), f"{dtype} raw")

    def test_volume_shape_errors(self):
        prog = camc.compile(f"{self.file}:vol")
        with self.assertRaises(camc.InputError) as caught:
            prog(A=self.a[0], G=self.g[0])
        self.assertIn("must be [n,k,d,h,w] (5 axes, the first one the images)", str(caught.exception))
        with self.assertRaises(camc.InputError) as caught:
            prog(A=self.a[:, :, 0], G=self.g[:, :, 0])
        self.assertIn("[n,k,d,h,w]", str(caught.exception))
        with self.assertRaises(camc.InputError) as caught:
            prog(A=self.a, G=self.g[:, :, :3])
        self.assertIn("`G` has d = 3, `A` has d = 4", str(caught.exception))
        with self.assertRaises(camc.InputError) as caught:
            prog(A=self.a, G=self.g, size=(1, 2, 3, 4))
        self.assertIn("does not fit", str(caught.exception))
        with self.assertRaises(camc.InputError) as caught:
            camc.compile("gradcam")(A=self.a, G=self.g)
        self.assertIn("must be [n,k,h,w]", str(caught.exception))


class EmitTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.volume = Path(self.tmp.name) / "volume.cam"
        self.volume.write_text(VOLUME)

    def cli_emit(self, program, *args):
        status, out, err = cli("emit", program, *args)
        self.assertEqual(status, 0, err)
        return out

    def test_ir_clif_cuda_equal_camc_emit(self):
        programs = ["gradcampp", "eigencam", "fem", "ablationcam", "scorecam", str(ROOT / "examples" / "gradcam_family.cam") + ":blend",
                    f"{self.volume}:vol_slices"]
        for program in programs:
            prog = camc.compile(program)
            for target in ("ir", "clif", "cuda"):
                self.assertEqual(prog.emit(target), self.cli_emit(program, "--target", target), f"{program} {target}")

    def test_clif_for_dims_and_size(self):
        prog = camc.compile("gradcampp")
        self.assertEqual(prog.emit("clif", dims=(2048, 7, 7)), prog.emit("clif"))
        self.assertEqual(prog.emit("clif", dims=(64, 8, 8)), self.cli_emit("gradcampp", "--target", "clif", "--dims", "64,8,8"))
        self.assertEqual(prog.emit("clif", dims=(64, 8, 8), size=(32, 24)),
                         self.cli_emit("gradcampp", "--target", "clif", "--dims", "64,8,8", "--size", "32,24"))
        vol = camc.compile(f"{self.volume}:vol")
        self.assertEqual(vol.emit("clif", dims=(3, 4, 5, 6)),
                         self.cli_emit(f"{self.volume}:vol", "--target", "clif", "--dims", "3,4,5,6"))

    def test_emit_with_a_scalar_equals_the_program_with_that_default(self):
        path = Path(self.tmp.name) / "three.cam"
        path.write_text("cam f(A: [k,h,w], s: [] = 3) = s * sum[k](A)\n")
        prog = camc.compile("cam f(A: [k,h,w], s: [] = 1) = s * sum[k](A)")
        for target in ("ir", "cuda", "clif"):
            self.assertEqual(prog.emit(target, s=3), self.cli_emit(str(path), "--target", target), target)
        self.assertNotEqual(prog.emit("ir", s=3), prog.emit("ir"))

    def test_ptx_equals_camc_emit_or_fails_as_it_does(self):
        prog = camc.compile("gradcampp")
        for arch in ("sm_75", "sm_90"):
            status, out, err = cli("emit", "gradcampp", "--target", "ptx", "--arch", arch)
            if status == 0:
                self.assertEqual(prog.emit("ptx", arch=arch), out)
            else:
                self.assertEqual(status, 1, err)
                with self.assertRaises(camc.DeviceError) as caught:
                    prog.emit("ptx", arch=arch)
                self.assertEqual(str(caught.exception), err.rstrip("\n").removeprefix("Error: "))

    def test_bad_emit_arguments(self):
        prog = camc.compile("gradcam")
        cases = [
            (dict(target="asm"), camc.InputError, 'target `asm`: emit "ir", "clif", "cuda" or "ptx"'),
            (dict(target="clif", dims=(1, 2)), camc.InputError, "dims (1, 2): give 3 or 4 integers"),
            (dict(target="clif", dims=(1, 2, 3, 4, 5)), camc.InputError, "give 3 or 4 integers"),
            (dict(target="clif", dims=(0, 7, 7)), camc.InputError, "each must be between 1 and"),
            # arguments of the wrong form are camc.InputErrors too, not bare ValueError/OverflowError
            (dict(target="clif", size=(8,)), camc.InputError, ""),
            (dict(target="clif", size=(8, 8, 8)), camc.InputError, ""),
            (dict(target="clif", dims=(-1, 7, 7)), camc.InputError, ""),
            (dict(target="clif", size=(-8, 8)), camc.InputError, ""),
        ]
        for kwargs, kind, text in cases:
            with self.subTest(**kwargs):
                with self.assertRaises(kind) as caught:
                    prog.emit(**kwargs)
                self.assertIn(text, str(caught.exception))
        # as `camc emit`: a 3-D map cannot be post-processed in the CPU kernel
        path = Path(self.tmp.name) / "volume.cam"
        vol = camc.compile(f"{path}:vol")
        with self.assertRaises(camc.ProgramError) as caught:
            vol.emit("clif", dims=(3, 4, 5, 6), size=(8, 9))
        self.assertEqual(str(caught.exception),
                         cli_error("emit", f"{path}:vol", "--target", "clif", "--dims", "3,4,5,6", "--size", "8,9"))


class CacheTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.a, self.g = Data.make()

    def test_the_same_program_is_compiled_once(self):
        self.assertIs(camc.compile("gradcam"), camc.compile("gradcam"))
        text = "cam cached(A: [k,h,w]) = max[k](A)"
        self.assertIs(camc.compile(text), camc.compile(text))
        self.assertIsNot(camc.compile("gradcam"), camc.compile("gradcampp"))
        family = str(ROOT / "examples" / "gradcam_family.cam")
        self.assertIs(camc.compile(family + ":blend"), camc.compile(family + ":blend"))
        self.assertIsNot(camc.compile(family + ":blend"), camc.compile(family + ":gradcam"))
        self.assertIsInstance(camc.compile("gradcam"), camc.Program)
        self.assertIn("gradcam(A: [k,h,w], G: [k,h,w])", repr(camc.compile("gradcam")))

    def test_an_edited_file_is_compiled_again(self):
        path = Path(self.tmp.name) / "edited.cam"
        path.write_text("cam edited(A: [k,h,w]) = sum[k](A)\n")
        first = camc.compile(str(path))
        self.assertIs(camc.compile(str(path)), first)
        np.testing.assert_allclose(first(A=self.a), self.a.sum(1), rtol=1e-6)
        # a different size (and mtime)
        path.write_text("cam edited(A: [k,h,w]) = max[k](A) + 1\n")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        second = camc.compile(str(path))
        self.assertIsNot(second, first)
        assert_bitwise_equal(self, second(A=self.a), self.a.max(1) + 1)
        # the same size, a later mtime
        path.write_text("cam edited(A: [k,h,w]) = min[k](A) + 1\n")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 4_000_000_000))
        third = camc.compile(str(path))
        self.assertIsNot(third, second)
        assert_bitwise_equal(self, third(A=self.a), self.a.min(1) + 1)
        # and by name in the file
        self.assertIs(camc.compile(f"{path}:edited"), camc.compile(f"{path}:edited"))
        path.write_text("cam edited(A: [k,h,w]) = min[k](A) + 2.5\n")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 6_000_000_000))
        assert_bitwise_equal(self, camc.compile(f"{path}:edited")(A=self.a), self.a.min(1) + np.float32(2.5))

    def test_a_file_that_stops_checking_is_an_error(self):
        path = Path(self.tmp.name) / "broken.cam"
        path.write_text("cam broken(A: [k,h,w]) = sum[k](A)\n")
        camc.compile(str(path))
        path.write_text("cam broken(A: [k,h,w]) = sum[k](B)\n")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
        with self.assertRaises(camc.ProgramError) as caught:
            camc.compile(str(path))
        self.assertIn("unknown name `B`", str(caught.exception))


class BadInputTest(unittest.TestCase):
    def setUp(self):
        self.a, self.g = Data.make()
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def assert_error(self, kind, text, call, *args, **kwargs):
        with self.assertRaises(kind) as caught:
            call(*args, **kwargs)
        self.assertIsInstance(caught.exception, camc.Error)
        if kind is camc.InputError:
            self.assertIsInstance(caught.exception, ValueError)
        if kind is camc.InputTypeError:
            self.assertIsInstance(caught.exception, TypeError)
        self.assertIn(text, str(caught.exception))
        return str(caught.exception)

    def test_bad_inputs_raise_camc_errors(self):
        prog = camc.compile("gradcam")
        a, g = self.a, self.g
        cases = [
            ("missing tensor", dict(A=a), camc.InputError, "missing tensor `G`: the program reads `G: [k,h,w]`"),
            ("no batch axis", dict(A=a[0], G=g[0]), camc.InputError,
             "`A` has shape [4, 5, 6]; the program reads `A: [k,h,w]`, so it must be [n,k,h,w] (4 axes, the first one the images)"),
            ("one without batch axis", dict(A=a, G=g[0]), camc.InputError, "`G` has shape [4, 5, 6]"),
            ("mismatched w", dict(A=a, G=g[:, :, :, :3].copy()), camc.InputError, "`G` has w = 3, `A` has w = 6"),
            ("mismatched k", dict(A=a, G=g[:, :2].copy()), camc.InputError, "`G` has k = 2, `A` has k = 4"),
            ("mismatched n", dict(A=a, G=g[:1]), camc.InputError, "`G` holds 1 images, `A` 3"),
            ("an empty axis", dict(A=a[:, :, :0], G=g[:, :, :0]), camc.InputError, "`A` has h = 0"),
            ("a string for a tensor", dict(A=a, G="x"), camc.InputTypeError, "`G` must be a NumPy array or a torch tensor, got str"),
            ("a list for a tensor", dict(A=a, G=g.tolist()), camc.InputTypeError, "`G` must be a NumPy array or a torch tensor, got list"),
            ("a number for a tensor", dict(A=a, G=1.0), camc.InputTypeError, "`G` is not a scalar parameter of `gradcam`"),
            ("float64", dict(A=a, G=g.astype(np.float64)), camc.InputTypeError, "`G` has dtype float64"),
            ("big-endian", dict(A=a, G=g.astype(">f4")), camc.InputTypeError, "`G` has dtype >f4"),
            ("complex", dict(A=a, G=g.astype(np.complex64)), camc.InputTypeError, "`G` has dtype complex64"),
            ("Fortran order", dict(A=a, G=np.asfortranarray(g)), camc.InputError, "`G` is not contiguous"),
            ("unknown tensor", dict(A=a, G=g, B=g), camc.InputError,
             "`B` is not a tensor parameter of `gradcam(A: [k,h,w], G: [k,h,w])`"),
            ("unknown scalar", dict(A=a, G=g, eps=1e-5), camc.InputTypeError,
             "`eps` is not a scalar parameter of `gradcam`; its parameters: gradcam(A: [k,h,w], G: [k,h,w])"),
            ("size of length 1", dict(A=a, G=g, size=(7,)), camc.InputError, "size [7] does not fit the program's map of shape [5, 6]"),
            ("size of length 3", dict(A=a, G=g, size=(7, 7, 7)), camc.InputError, "does not fit"),
            ("size a string", dict(A=a, G=g, size="224"), camc.InputTypeError, "size must be a tuple (H, W)"),
            ("size a number", dict(A=a, G=g, size=224), camc.InputTypeError, "size must be a tuple (H, W)"),
            ("size of floats", dict(A=a, G=g, size=(7.0, 7)), camc.InputTypeError, "size must hold integers"),
            ("size of bools", dict(A=a, G=g, size=(True, 7)), camc.InputTypeError, "size must hold integers"),
            ("size zero", dict(A=a, G=g, size=(0, 7)), camc.InputError, "every side must be at least 1"),
            ("size negative", dict(A=a, G=g, size=(7, -7)), camc.InputError, "every side must be at least 1"),
            ("size too large", dict(A=a, G=g, size=(16384, 16384)), camc.InputError, "exceeds the limit"),
        ]
        for what, kwargs, kind, text in cases:
            with self.subTest(what):
                self.assert_error(kind, text, prog, **kwargs)

    def test_bad_scalars(self):
        prog = camc.compile("gradcampp")
        a, g = self.a, self.g
        self.assert_error(camc.InputTypeError, "`eps` is a scalar parameter of `gradcampp`: pass a number (or one per image, an array [n]), got str", prog, A=a, G=g, eps="x")
        self.assert_error(camc.InputTypeError, "pass a number (or one per image, an array [n]), got bool", prog, A=a, G=g, eps=True)
        self.assert_error(camc.InputTypeError, "pass a number (or one per image, an array [n]), got NoneType", prog, A=a, G=g, eps=None)
        self.assert_error(camc.InputError, "`eps` = NaN: the value must be finite", prog, A=a, G=g, eps=float("nan"))
        self.assert_error(camc.InputError, "must be finite", prog, A=a, G=g, eps=float("inf"))
        # finite as a Python float, infinite as the float32 the program computes with (the CLI's
        # `--set eps=1e300` is refused as not finite)
        self.assertEqual(cli("run", "gradcampp", "--cache", ".", "-o", "x.npy", "--set", "eps=1e300")[0], 2)
        self.assert_error(camc.InputError, "must be finite", prog, A=a, G=g, eps=1e300)

    @needs_torch
    def test_bad_torch_inputs(self):
        prog = camc.compile("gradcam")
        ta, tg = torch.from_numpy(self.a), torch.from_numpy(self.g)
        meta = torch.empty(tg.shape, device="meta")
        cases = [
            ("torch float64", dict(A=ta, G=tg.double()), camc.InputTypeError, "`G` has dtype torch.float64"),
            ("torch bool", dict(A=ta, G=tg > 0), camc.InputTypeError, "`G` has dtype torch.bool"),
            ("torch complex", dict(A=ta, G=tg.to(torch.complex64)), camc.InputTypeError, "`G` has dtype torch.complex64"),
            ("transposed", dict(A=ta.transpose(2, 3), G=tg.transpose(2, 3)), camc.InputError, "not contiguous"),
            ("NumPy and torch", dict(A=self.a, G=tg), camc.InputError, "the tensors mix NumPy arrays and torch tensors: pass one kind"),
            ("CPU and meta", dict(A=ta, G=meta), camc.InputError,
             "the tensors are on different devices (`A` on cpu, `G` on meta); move them to one"),
            ("meta only", dict(A=torch.empty(ta.shape, device="meta"), G=meta), camc.DeviceError,
             "camc computes on the CPU or a CUDA GPU; the tensors are on meta"),
            ("torch no batch axis", dict(A=ta[0], G=tg[0]), camc.InputError, "so it must be [n,k,h,w]"),
            ("torch mismatched n", dict(A=ta, G=tg[:2]), camc.InputError, "`G` holds 2 images, `A` 3"),
            ("torch missing", dict(G=tg), camc.InputError, "missing tensor `A`"),
        ]
        for what, kwargs, kind, text in cases:
            with self.subTest(what):
                self.assert_error(kind, text, prog, **kwargs)

    def test_compile_errors_are_the_clis(self):
        tmp = Path(self.tmp.name)
        two = tmp / "two.cam"
        two.write_text("cam one(A: [k,h,w]) = sum[k](A)\ncam two(A: [k,h,w]) = max[k](A)\nfn helper(x: [k]) = x\n")
        for spec in ("gradcm", "nosuchmethod", "two.cam", "two.cam:missing", "two.cam:helper", "absent.cam"):
            with self.subTest(spec):
                expected = cli_error("emit", spec, "--target", "ir", cwd=tmp)
                old = os.getcwd()
                os.chdir(tmp)
                try:
                    message = self.assert_error(camc.ProgramError, "", camc.compile, spec)
                finally:
                    os.chdir(old)
                self.assertEqual(message, expected)
        self.assertIn("did you mean `gradcam`?", cli_error("emit", "gradcm", "--target", "ir"))
        self.assert_error(camc.InputTypeError, "camc.compile takes a str", camc.compile, 3)
        self.assert_error(camc.InputTypeError, "camc.compile takes a str", camc.compile, Path("x.cam"))

    def test_type_errors_in_source_text_are_the_diagnostics_of_camc_check(self):
        tmp = Path(self.tmp.name)
        (tmp / "bad.cam").write_text(TYPE_ERRORS)
        status, _, err = cli("check", "bad.cam", cwd=tmp)
        self.assertEqual(status, 1)
        expected = err.replace("bad.cam", "<source>").rstrip("\n").splitlines()
        for spec, name in ((TYPE_ERRORS, "<source>"), (str(tmp / "bad.cam"), str(tmp / "bad.cam"))):
            message = self.assert_error(camc.ProgramError, "unknown function `Relu`", camc.compile, spec)
            got = message.replace(name, "<source>").splitlines()
            # the diagnostics, line for line; the last line is a summary (`camc check`: "Error:
            # `bad.cam` has 2 errors")
            self.assertEqual(got[:-1], expected[:-1])
            self.assertIn("`<source>`", got[-1])
        self.assertIn("Help: reduce k with sum[k](...)?", message)
        self.assertIn("Help: did you mean `relu`?", message)

    def test_syntax_errors_in_source_text(self):
        text = "cam f(A: [k,h,w]) = sum[k](A) +\n"
        tmp = Path(self.tmp.name)
        (tmp / "syntax.cam").write_text(text)
        _, _, err = cli("check", "syntax.cam", cwd=tmp)
        message = self.assert_error(camc.ProgramError, "", camc.compile, text)
        self.assertEqual(message.replace("<source>", "syntax.cam").splitlines()[:-1], err.rstrip("\n").splitlines()[:-1])

    def test_nothing_panics(self):
        """Odd arguments raise a camc.Error (or work), never a Rust panic or another exception."""
        prog = camc.compile("gradcampp")
        a, g = self.a, self.g
        calls = [
            lambda: prog(A=a, G=g, size=(2**70, 9)),
            lambda: prog(A=a, G=g, size=(2**40, 2**40)),
            lambda: prog(A=a, G=g, eps=1e40),
            lambda: prog(A=a, G=g, eps=-0.0),
            lambda: prog(A=np.zeros((), np.float32), G=g),
            lambda: prog(A=np.zeros((1, 1, 1, 1), np.float32), G=np.zeros((1, 1, 1, 1), np.float32), size=(1, 1)),
            lambda: prog(A=a[:0], G=g[:0], size=(3, 3)),
            lambda: prog(A=a.reshape(3, 4, 30, 1), G=g.reshape(3, 4, 30, 1), size=(60, 2)),
            lambda: prog(A=a, G=g, size=()),
            lambda: prog(A=a, G=g, size=[7, 7]),
            lambda: prog(A=np.full_like(a, np.nan), G=np.full_like(g, np.inf)),
            lambda: prog(A=np.full_like(a, np.nan), G=np.full_like(g, np.inf), size=(9, 9)),
            lambda: prog.emit("clif", dims=(2**40, 7, 7)),
            lambda: prog.emit("clif", size=(0, 0)),
            lambda: prog.emit("ir", eps="x"),
            lambda: prog.emit("ir", eps=float("nan")),
            lambda: prog.emit("ir", nosuch=1.0),
            lambda: camc.compile(""),
            lambda: camc.compile("\x00"),
            lambda: camc.compile("cam"),
            lambda: camc.compile("cam f(A: [k,h,w]) = " + "(" * 200 + "A" + ")" * 200),
            lambda: camc.compile("cam f(A: [k,h,w]) = sum[k](" + " + ".join(["A"] * 300) + ")"),
            lambda: camc.compile("cam f(A: [k,h,w]) = sum[k](A)\n" * 2),
            lambda: camc.compile("fn f(A: [k]) = A\n"),
            lambda: camc.compile("/"),
            lambda: camc.compile(str(ROOT / "examples")),
            lambda: camc.compile(str(ROOT / "examples") + ".cam:x"),
            lambda: camc.compile(":"),
        ]
        for i, call in enumerate(calls):
            with self.subTest(i):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        call()
                except camc.Error:
                    pass
                except BaseException as e:  # noqa: BLE001 - a PanicException is a BaseException
                    self.fail(f"call {i} raised {type(e).__module__}.{type(e).__name__}: {e}")


if __name__ == "__main__":
    unittest.main()

"""A property test over random programs: for ~40 well-typed `.cam` programs over
`A: [k,h,w], G: [k,h,w]` (seeded, no hypothesis), camc.compile's result on the CPU JIT equals
the reference interpreter's (`camc run FILE.cam:NAME --backend interp --raw`) to rtol 1e-5,
atol 1e-6; non-finite values are 0 in both (the contract of raw maps).
Run: PYTHONPATH=python python -m unittest python/tests/test_compile_random.py"""

import random
import re
import sys
import tempfile
import time
import unittest
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import camc  # noqa: E402
from _cli import cli, write_cache  # noqa: E402

AXES = ("k", "h", "w")
FULL = frozenset(AXES)
MAP = frozenset(("h", "w"))
PROGRAMS = 40
SEED = 0


def axes(ty):
    return ",".join(a for a in AXES if a in ty)


def subsets(ty, nonempty=True):
    items = [a for a in AXES if a in ty]
    out = []
    for mask in range(1 << len(items)):
        chosen = frozenset(a for i, a in enumerate(items) if mask >> i & 1)
        if chosen or not nonempty:
            out.append(chosen)
    return out


class Generator:
    """Random expressions of a wanted type (a set of axes). Values are kept tame where the two
    executors could legitimately differ by more than rounding: divisors are at least 1, `exp`
    sees non-positive arguments, `log` and `sqrt` non-negative ones."""

    def __init__(self, rng):
        self.rng = rng

    def number(self):
        return self.rng.choice(["0.5", "2", "1e-3", "3.25", "0.1", "1", "7", ".25", "1e2"])

    def leaf(self, ty, names):
        """A name of type `ty` (a parameter or a binding), a reduction of a wider one, or a number."""
        rng = self.rng
        exact = [n for n, t in names if t == ty]
        if not ty and (not exact or rng.random() < 0.5):
            return self.number()
        if exact and rng.random() < 0.75:
            return rng.choice(exact)
        wider = [(n, t) for n, t in names if ty < t]
        if not wider:
            return self.number() if not ty else rng.choice(exact)
        name, t = rng.choice(wider)
        op = rng.choice(["sum", "mean", "max", "min"])
        return f"{op}[{axes(t - ty)}]({name})"

    def expr(self, ty, depth, names):
        rng = self.rng
        if depth <= 0 or rng.random() < 0.15:
            return self.leaf(ty, names)
        d = depth - 1
        kind = rng.choices(
            ["unary", "arith", "div", "minmax", "where", "mask", "logic", "reduce", "keep", "pc1", "power", "raw"],
            weights=[14, 16, 5, 5, 5, 4, 2, 14, 6, 2, 3, 5],
        )[0]
        if kind == "raw":
            # NaN and infinities on purpose: how each operation propagates them must agree
            x = self.expr(ty, d, names)
            form = rng.choice(["log({})", "sqrt({})", "(1 / {})", "({} / 0)", "(0 / {})", "exp({} * 100)"])
            return form.format(x)
        if kind == "unary":
            x = self.expr(ty, d, names)
            form = rng.choice(["relu({})", "abs({})", "sqrt(abs({}))", "exp(-abs({}))", "log(abs({}) + 1)",
                               "sigmoid({})", "tanh({})", "sign({})", "-{}", "-({})", "({})"])
            return form.format(x)
        if kind == "arith":
            other = rng.choice(subsets(ty, nonempty=False))
            x, y = self.expr(ty, d, names), self.expr(other, d, names)
            if rng.random() < 0.5:
                x, y = y, x
            return f"({x} {rng.choice('+-*')} {y})"
        if kind == "div":
            other = rng.choice(subsets(ty, nonempty=False))
            x, y = self.expr(ty, d, names), self.expr(other, d, names)
            if rng.random() < 0.5:
                x, y = y, x
            return f"({x} / (abs({y}) + 1))"
        if kind == "minmax":
            other = rng.choice(subsets(ty, nonempty=False))
            x, y = self.expr(ty, d, names), self.expr(other, d, names)
            if rng.random() < 0.3:
                lo = self.expr(rng.choice(subsets(ty, nonempty=False)), d, names)
                return f"clamp({x}, {lo}, {y})"
            return f"{rng.choice(['min', 'max'])}({x}, {y})"
        if kind in ("where", "mask"):
            c1, c2 = (rng.choice(subsets(ty, nonempty=False)) for _ in range(2))
            cond = f"{self.expr(c1, d, names)} {rng.choice(['>', '<', '>=', '<=', '==', '!='])} {self.expr(c2, d, names)}"
            if kind == "mask":
                return f"({cond}) * {self.expr(ty, d, names)}"
            a_ty, b_ty = ty, rng.choice(subsets(ty, nonempty=False))
            if rng.random() < 0.5:
                a_ty, b_ty = b_ty, a_ty
            return f"where({cond}, {self.expr(a_ty, d, names)}, {self.expr(b_ty, d, names)})"
        if kind == "logic":
            x, y = self.expr(ty, d, names), self.expr(rng.choice(subsets(ty, nonempty=False)), d, names)
            return f"(({x} > 0.5) {rng.choice(['&&', '||'])} ({y} < 0))"
        if kind == "reduce" and ty != FULL:
            extra = rng.choice(subsets(FULL - ty))
            op = rng.choice(["sum", "mean", "max", "min", "norm", "std"])
            return f"{op}[{axes(extra)}]({self.expr(ty | extra, d, names)})"
        if kind == "keep" and ty:
            over = rng.choice(subsets(ty))
            x = self.expr(ty, d, names)
            if rng.random() < 0.5:
                return f"normalize[{axes(over)}]({x})"
            return f"softmax[{axes(over)}](tanh({x}))"
        if kind == "pc1" and ty and "k" not in ty:
            return f"pc1[k]({self.expr(ty | {'k'}, d, names)})"
        if kind == "power":
            return f"abs({self.expr(ty, d, names)})^{rng.choice(['2', '3', '0.5', '1.5', '-1'])}" if rng.random() < 0.5 \
                else f"(abs({self.expr(ty, d, names)}) + 1)^{rng.choice(['2', '0.5', '-1', '-0.5'])}"
        return self.leaf(ty, names)

    def program(self, name):
        """One `cam NAME(A, G[, s]) ...` (and maybe a helper `fn`): its source and scalars."""
        rng = self.rng
        params = [("A", FULL), ("G", FULL)]
        scalars = {}
        header = "A: [k,h,w], G: [k,h,w]"
        if rng.random() < 0.3:
            default = rng.choice(["0.5", "2", "-1", "1e-3"])
            header += f", s: [] = {default}"
            params.append(("s", frozenset()))
            if rng.random() < 0.5:
                scalars["s"] = rng.choice([0.25, 3.0, -2.0])
        helper = ""
        if rng.random() < 0.2:
            p_ty, r_ty = rng.choice([FULL, frozenset("k"), MAP]), rng.choice(subsets(FULL, nonempty=False))
            body = self.expr(r_ty, 2, [("x", p_ty), ("y", FULL)])
            helper = f"fn {name}_helper(x: [{axes(p_ty)}], y: [k,h,w]) = {body}\n"
            # a call is a leaf of the helper's result type
            arg = self.leaf(p_ty, params)
            params.append((f"{name}_helper({arg}, {rng.choice(['A', 'G'])})", r_ty))
        if rng.random() < 0.4:
            lets, names = [], list(params)
            for i in range(rng.randint(1, 3)):
                ty = rng.choice(subsets(FULL, nonempty=False))
                lets.append(f"    let t{i} = {self.expr(ty, rng.randint(1, 3), names)};")
                names.append((f"t{i}", ty))
            result = self.expr(MAP, rng.randint(2, 4), names)
            # every binding is used (an unused one would be a warning, and could hide A or G)
            unused = [(n, t) for i, (n, t) in enumerate(names[len(params):])
                      if not any(re.search(rf"\b{n}\b", text) for text in [result] + lets[i + 1:])]
            if unused:
                result = f"{result} + 0.5 * (" + " + ".join(f"mean[{axes(t)}]({n})" if t else n for n, t in unused) + ")"
            source = f"cam {name}({header}) {{\n" + "\n".join(lets) + f"\n    {result}\n}}\n"
        else:
            source = f"cam {name}({header}) = {self.expr(MAP, rng.randint(2, 5), params)}\n"
        return helper + source, scalars


class RandomProgramsTest(unittest.TestCase):
    def test_random_programs_equal_the_interpreter(self):
        started = time.monotonic()
        rng = random.Random(SEED)
        gen = Generator(rng)
        programs = []
        while len(programs) < PROGRAMS:
            name = f"r{len(programs):02d}"
            source, scalars = gen.program(name)
            kernel = camc.compile(source).emit("ir").splitlines()[0]
            if not ("A: [k,h,w]" in kernel and "G: [k,h,w]" in kernel):
                continue  # every program reads both of its tensors (after inlining)
            programs.append((name, source, scalars))
        data = np.random.default_rng(SEED)
        a = data.random((3, 5, 6, 7), dtype=np.float32)
        g = data.standard_normal((3, 5, 6, 7)).astype(np.float32)
        a[0, 1, 2, 3] = 0.0  # exact zeros meet sign, relu, comparisons, log(abs + 1)
        g[1, :, 0, 0] = 0.0
        failures = []
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / "random.cam"
            file.write_text("".join(source for _, source, _ in programs))
            status, out, err = cli("check", file)
            self.assertEqual(status, 0, f"the generated programs do not check:\n{err}\n{file.read_text()}")
            cache = write_cache(tmp, {"A": a, "G": g})
            for name, source, scalars in programs:
                spec = f"{file}:{name}"
                sets = [arg for n, v in scalars.items() for arg in ("--set", f"{n}={v}")]
                target = Path(tmp) / f"{name}.npy"
                status, _, err = cli("run", spec, "--cache", cache, "-o", target, "--backend", "interp", "--raw", *sets)
                if status != 0:
                    failures.append(f"{name}: camc run failed ({status}): {err}\n{source}")
                    continue
                expected = np.load(target)
                prog = camc.compile(spec)
                self.assertEqual(prog.name, name)
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        got = prog(A=a, G=g, **scalars)
                except BaseException as e:  # noqa: BLE001 - report every program, panics included
                    failures.append(f"{name}: {type(e).__name__}: {e}\n{source}")
                    continue
                if got.shape != expected.shape or got.dtype != np.float32:
                    failures.append(f"{name}: shape {got.shape} {got.dtype}, expected {expected.shape}\n{source}")
                    continue
                if not (np.isfinite(got).all() and np.isfinite(expected).all()):
                    failures.append(f"{name}: non-finite values in the raw maps (they must be set to 0)\n{source}")
                    continue
                bad = ~np.isclose(got, expected, rtol=1e-5, atol=1e-6)
                if bad.any():
                    where = tuple(np.argwhere(bad)[0])
                    failures.append(f"{name}: {bad.sum()} of {bad.size} values differ, first at {where}: "
                                    f"JIT {got[where]!r}, interpreter {expected[where]!r} (scalars {scalars})\n{source}")
        self.assertFalse(failures, "\n".join(failures))
        self.assertLess(time.monotonic() - started, 120, "the random-program test should take about a minute at most")


if __name__ == "__main__":
    unittest.main()

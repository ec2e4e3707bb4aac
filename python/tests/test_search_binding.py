"""camc._camc.search with a Python scorer of each map's mean ranks like `camc search --metric
complexity` (which scores exactly that); an exception in the scorer is raised as is and leaves a
checkpoint that resume=True continues; a malformed result is a camc.Error naming it.
Run: PYTHONPATH=python python -m unittest discover -s python/tests -p 'test_search*'"""

import json
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import camc  # noqa: E402
from camc import _camc  # noqa: E402
from _cli import ROOT, cli  # noqa: E402

DEMO = ROOT / "examples" / "data" / "demo.safetensors"
# The demo cache's image_size: the size `camc search` post-processes maps to for metrics.
SIZE = (64, 64)
BUDGET = 20


def mean_of_each_map(first, maps):
    return [float(m.mean(dtype=np.float64)) for m in maps]


def search(out, scorer=mean_of_each_map, **options):
    return _camc.search(str(DEMO), str(out), "complexity-py", "lower", scorer, SIZE, budget=BUDGET, **options)


def report_of(out):
    return json.loads((Path(out) / "report.json").read_text())


def ranked(report):
    return [(s["weights"], s["train"], s["holdout"]) for s in report["outcome"]["ranked"]]


class Boom(Exception):
    pass


class SearchBindingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.temp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.temp.name)
        cls.progress = []
        cls.summary = search(cls.dir / "fresh", progress=lambda *args: cls.progress.append(args))
        cls.fresh = report_of(cls.dir / "fresh")

    @classmethod
    def tearDownClass(cls):
        cls.temp.cleanup()

    def assert_same_ranking(self, got, expected, tolerance):
        self.assertEqual([w for w, _, _ in got], [w for w, _, _ in expected])
        for (weights, *values), (_, *reference) in zip(got, expected):
            for value, ref in zip(values, reference):
                self.assertAlmostEqual(value, ref, delta=tolerance, msg=weights)

    def test_ranks_like_the_complexity_metric_of_the_cli(self):
        out = self.dir / "cli"
        args = ["--cache", DEMO, "--metric", "complexity", "--budget", BUDGET, "--backend", "cpu", "--out", out]
        status, stdout, stderr = cli("search", *args)
        self.assertEqual(status, 0, stderr)
        reference = report_of(out)
        # Every candidate is ranked or dropped from the top as a duplicate map (vetting).
        dropped = [d["weights"] for d in self.fresh["outcome"]["dropped"]]
        self.assertEqual(len(ranked(self.fresh)) + len(dropped), BUDGET)
        self.assertEqual(dropped, [d["weights"] for d in reference["outcome"]["dropped"]])
        self.assert_same_ranking(ranked(self.fresh), ranked(reference), 1e-9)
        # The stdlib baselines are scored by the callback too.
        baselines = {row["program"]: row for row in reference["stdlib"]}
        self.assertEqual(sorted(r["program"] for r in self.fresh["stdlib"]), sorted(baselines))
        for row in self.fresh["stdlib"]:
            self.assertAlmostEqual(row["train"], baselines[row["program"]]["train"], delta=1e-9)
        self.assertEqual(self.fresh["scorer"], "model")
        self.assertNotIn("scorer", reference)
        self.assertEqual(self.fresh["metric"], "complexity-py")
        self.assertEqual(set(reference) | {"scorer"}, set(self.fresh))
        # The summary is the CLI's (its first three lines hold the timings and the metric's name).
        self.assertIn("metric complexity-py (lower better)", self.summary)
        self.assertEqual(self.summary.splitlines()[3:], stdout.splitlines()[3:])
        rank1 = (self.dir / "fresh" / "rank-01.cam").read_text()
        self.assertIn("# camc search: rank 1 for metric `complexity-py` (lower better)", rank1)
        self.assertEqual(len(list((self.dir / "fresh").glob("rank-*.cam"))), 5)

    def test_progress_is_told_after_each_candidate(self):
        self.assertEqual([(done, total) for done, total, _ in self.progress], [(i, BUDGET) for i in range(1, BUDGET + 1)])
        self.assertEqual(self.progress[-1][2], ranked(self.fresh)[0][0])

    def test_a_scorer_exception_is_raised_and_resume_continues(self):
        out = self.dir / "interrupted"
        calls = []

        def failing(first, maps):
            calls.append(first)
            # 256 images in batches of 32: 8 calls a candidate; fail in the sixth candidate.
            if len(calls) > 5 * 8 + 3:
                raise Boom("the model crashed")
            return mean_of_each_map(first, maps)

        with self.assertRaises(Boom) as raised:
            search(out, failing)
        self.assertEqual(str(raised.exception), "the model crashed")
        lines = (out / "checkpoint.jsonl").read_text().splitlines()
        self.assertEqual(len(lines), 1 + 5)
        self.assertFalse((out / "report.json").exists())
        search(out, resume=True)
        report = report_of(out)
        self.assertEqual((report["outcome"]["resumed"], report["outcome"]["evaluated"]), (5, BUDGET - 5))
        # Values read back from the checkpoint's JSON may differ from computed ones in the last bit.
        self.assert_same_ranking(ranked(report), ranked(self.fresh), 1e-15)

    def test_keyboard_interrupt_in_the_scorer_stays_one(self):
        def interrupted(first, maps):
            raise KeyboardInterrupt

        with self.assertRaises(KeyboardInterrupt):
            search(self.dir / "ctrl-c", interrupted)

    def test_an_exception_in_progress_stops_the_search(self):
        def progress(done, total, best):
            if done == 3:
                raise Boom("stop at 3")

        with self.assertRaises(Boom):
            search(self.dir / "progress", progress=progress)
        self.assertEqual(len((self.dir / "progress" / "checkpoint.jsonl").read_text().splitlines()), 1 + 3)

    def test_malformed_scores_name_what_was_returned(self):
        cases = [
            (lambda first, maps: [0.5], camc.InputError, "returned 1 values for the 32 maps of images 0..32: [0.5]"),
            (lambda first, maps: ["high"] * len(maps), camc.InputTypeError, "returned 'high' (of type str) for image 0"),
            (lambda first, maps: 0.5, camc.InputTypeError, "returned 0.5 (of type float)"),
        ]
        for i, (scorer, error, message) in enumerate(cases):
            with self.subTest(message), self.assertRaises(error) as raised:
                search(self.dir / f"malformed-{i}", scorer)
            self.assertIn(message, str(raised.exception))

    def test_unscored_images_are_skipped(self):
        out = self.dir / "none"
        search(out, lambda first, maps: [None] * len(maps))
        self.assertTrue(all(s["train"] is None for s in report_of(out)["outcome"]["ranked"]))

    def test_bad_arguments_are_input_errors(self):
        for options, message in [
            ({"holdout": 1.0}, "holdout must be in [0, 1)"),
            ({"resume": True, "force": True}, "exclude each other"),
            ({"batch": 0}, "batch must be at least 1"),
        ]:
            with self.subTest(message), self.assertRaises(camc.InputError) as raised:
                search(self.dir / "bad", **options)
            self.assertIn(message, str(raised.exception))
        with self.assertRaises(camc.InputError) as raised:
            _camc.search(str(DEMO), str(self.dir / "bad"), "m", "up", mean_of_each_map, SIZE)
        self.assertIn("expected \"higher\" or \"lower\"", str(raised.exception))
        with self.assertRaises(camc.InputTypeError):
            _camc.search(str(DEMO), str(self.dir / "bad"), "m", "lower", 3, SIZE)
        # A checkpoint of another search is not resumed silently.
        with self.assertRaises(camc.InputError) as raised:
            _camc.search(str(DEMO), str(self.dir / "fresh"), "other", "lower", mean_of_each_map, SIZE, budget=BUDGET, resume=True)
        self.assertIn("metric (`complexity-py`, not `other`)", str(raised.exception))


if __name__ == "__main__":
    unittest.main()

"""camc.torch.search: `camc search` with the model in the loop, on the demo CNN (8 test images).

Each search's scores are checked against camc.torch.evaluate of its winner (an independent
path: the CAM hooks instead of the recorded cache, evaluate's batching instead of the search's).

Run: PYTHONPATH=python .venv-py/bin/python -m unittest python/tests/test_torch_search.py -v
"""

from __future__ import annotations

import os
import tempfile
import unittest
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

import camc  # noqa: E402
import models  # noqa: E402
from camc.torch import evaluate, search  # noqa: E402

torch.set_num_threads(int(os.environ.get("CAMC_TEST_THREADS", "1")))


class ModelInTheLoop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = models.demo_model()
        cls.layer = cls.model.features.relu4
        cls.images = models.demo_images(8)
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_search(self, metric, **kw):
        out = Path(self.tmp.name, metric)
        report = search(self.model, [self.layer], self.images, metric=metric, budget=40, out=out, **kw)
        return out, report

    def check(self, metric):
        out, report = self.run_search(metric)
        self.assertEqual(report["scorer"], "model")
        self.assertGreater(report["candidates_per_second"], 0)
        outcome = report["outcome"]
        self.assertEqual((outcome["train_images"], outcome["holdout_images"]), (6, 2))
        winner = outcome["ranked"][0]
        # The winner re-scored by camc.torch.evaluate on every image: its mean is the images'
        # weighted mean of the search's train and holdout values.
        rows = evaluate(self.model, [self.layer], [str(out / "rank-01.cam")], self.images, metrics=[metric],
                        per_image=True)
        mean = rows[0]["value"]
        self.assertAlmostEqual(mean, (6 * winner["train"] + 2 * winner["holdout"]) / 8, delta=1e-3 * max(1, abs(mean)))
        # Every stdlib method was scored on the same split, and the report says how rank 1
        # compares with the best of them on holdout.
        stdlib = {r["program"]: r for r in report["stdlib"]}
        self.assertIn("gradcam", stdlib)
        self.assertIn("gradcampp", stdlib)
        gradcam = evaluate(self.model, [self.layer], ["gradcam"], self.images, metrics=[metric])[0]["value"]
        g = stdlib["gradcam"]
        self.assertAlmostEqual(gradcam, (6 * g["train"] + 2 * g["holdout"]) / 8, delta=1e-3 * max(1, abs(gradcam)))
        versus = report["versus_stdlib"]
        sign = 1 if report["better"] == "higher" else -1
        best = max((r for r in report["stdlib"] if r["holdout"] is not None), key=lambda r: sign * r["holdout"])
        self.assertEqual(versus["best_stdlib"], best["program"])
        self.assertAlmostEqual(versus["margin"], sign * (winner["holdout"] - best["holdout"]), places=9)
        verdict = "beats every stdlib method" if versus["margin"] > 0 else "falls short of the best stdlib method"
        self.assertIn(f"holdout: rank-01 {verdict}", report["summary"])
        return out, report

    def test_average_drop(self):
        self.check("ad")

    def test_average_gain_and_resume(self):
        out, report = self.check("ag")
        with self.assertRaisesRegex(camc.Error, "resume=True continues it"):
            self.run_search("ag")
        again = self.run_search("ag", resume=True)[1]
        self.assertEqual(again["outcome"]["resumed"], 40)
        self.assertEqual(again["outcome"]["evaluated"], 0)
        self.assertEqual([r["weights"] for r in again["outcome"]["ranked"]],
                         [r["weights"] for r in report["outcome"]["ranked"]])
        # Other images are another search: the checkpoint refuses them.
        with self.assertRaises(Exception):
            search(self.model, [self.layer], self.images.flip(0), metric="ag", budget=40, out=out, resume=True)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(camc.InputError, "coherency and adcc re-run each candidate"):
            search(self.model, [self.layer], self.images, metric="coherency", out=Path(self.tmp.name, "x"))
        with self.assertRaisesRegex(camc.InputError, "one layer"):
            search(self.model, [self.layer, self.model.features.relu3], self.images, out=Path(self.tmp.name, "x"))


if __name__ == "__main__":
    unittest.main()

"""How faithful are Grad-CAM, Grad-CAM++ and a program of your own on the bundled demo CNN?

camc.torch.evaluate re-runs the model on the masked, deleted and inserted images (Average Drop,
Increase in Confidence, Average Gain, deletion and insertion; docs/metrics.md), prints the
table, writes the rows as JSON and an HTML report with every image's overlays and metrics.
Then camc.torch.search looks for a formula that beats them on Average Drop, with the model in
the loop (a small budget: about a minute on 2 cores).

    bash scripts/install-torch.sh && pip install ./python     # or PYTHONPATH=python after scripts/test.sh
    python examples/python/evaluate_demo.py --out demo-eval [--images 32] [--budget 100]
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from camc.torch import evaluate, search

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "pytorch"))
from demo_model import MEAN, STD, DemoNet  # noqa: E402

SHARP = "cam sharp(A: [k,h,w], G: [k,h,w]) = relu(sum[k](mean[h,w](relu(G)) * A^2))"
METRICS = ["ad", "ic", "ag", "deletion", "insertion"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="demo-eval")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--budget", type=int, default=100)
    args = parser.parse_args()
    out = Path(args.out)

    model = DemoNet().eval()
    model.load_state_dict(load_file(str(HERE.parent / "data" / "demo_model.safetensors")))
    pixels = load_file(str(HERE.parent / "data" / "demo16.safetensors"))["image"][: args.images]
    images = (pixels.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    layer = model.features.relu4

    rows = evaluate(model, [layer], ["gradcam", "gradcampp", SHARP], images, metrics=METRICS,
                    report=out / "report")
    programs = list(dict.fromkeys(r["program"] for r in rows))
    print(f"{'program':<12}" + "".join(f"{m + ('↓' if m in ('ad', 'deletion') else '↑'):>12}" for m in METRICS))
    for program in programs:
        values = {r["metric"]: r["value"] for r in rows if r["program"] == program}
        name = program if len(program) < 12 else "sharp"
        print(f"{name:<12}" + "".join(f"{values[m]:>12.4f}" for m in METRICS))
    (out / "metrics.json").write_text(json.dumps(rows, indent=2) + "\n")

    report = search(model, [layer], images, metric="ad", budget=args.budget, out=out / "search-ad", force=True)
    print(report["summary"])
    print(f"report: {out / 'report' / 'report.html'}; rows: {out / 'metrics.json'}; "
          f"winners: {out / 'search-ad'}/rank-NN.cam")


if __name__ == "__main__":
    main()

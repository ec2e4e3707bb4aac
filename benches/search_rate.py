"""`camc search` before and after batched evaluation, in one run (docs/search.md).

    cargo build --release --bin camc && python3 benches/search_rate.py

Runs the same search on the demo cache (budget 3 000, 256 images) with `--evaluation single`
(each candidate compiled by the CPU JIT and run on its own: the engine before batching) and
with `--evaluation batched` (the default), for `--metric loc` and `--metric energy`, and prints
candidates per second of evaluation and of the whole run, image-evaluations per second, and
whether the top ranks agree. Python standard library only.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(camc, cache, metric, budget, evaluation, out, extra):
    command = [camc, "search", "--cache", cache, "--metric", metric, "--budget", str(budget),
               "--out", str(out), "--backend", "cpu", "--evaluation", evaluation, "--force", *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    report = json.loads((out / "report.json").read_text())
    outcome = report["outcome"]
    images = outcome["train_images"] + outcome["holdout_images"]
    return {
        "evaluation_rate": report["evaluation_candidates_per_second"],
        "whole_rate": report["candidates_per_second"],
        "image_rate": outcome["evaluated"] * images / max(outcome["evaluation_seconds"], 1e-9),
        "seconds": outcome["seconds"],
        "evaluation_seconds": outcome["evaluation_seconds"],
        "enumeration_seconds": outcome["enumeration_seconds"],
        "top": [(s["weights"], s["train"]) for s in outcome["ranked"][:5]],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camc", default=str(ROOT / "target/release/camc"))
    parser.add_argument("--cache", default=str(ROOT / "examples/data/demo.safetensors"))
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--metrics", default="loc,energy")
    parser.add_argument("--max-size", type=int, default=None,
                        help="also passed to camc (e.g. 8 for the depth-8 search)")
    args = parser.parse_args()
    extra = ["--max-size", str(args.max_size)] if args.max_size else []
    print(f"| metric | evaluation | candidates/s (evaluation) | candidates/s (whole run) | "
          f"image-evaluations/s | enumeration s | evaluation s | whole s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for metric in args.metrics.split(","):
            results = {}
            for evaluation in ["single", "batched"]:
                out = pathlib.Path(tmp) / f"{metric}-{evaluation}"
                r = run(args.camc, args.cache, metric, args.budget, evaluation, out, extra)
                results[evaluation] = r
                print(f"| {metric} | {evaluation} | {r['evaluation_rate']:.0f} | {r['whole_rate']:.0f} | "
                      f"{r['image_rate']:.0f} | {r['enumeration_seconds']:.2f} | "
                      f"{r['evaluation_seconds']:.2f} | {r['seconds']:.2f} |")
            single, batched = results["single"], results["batched"]
            same = [w for w, _ in single["top"]] == [w for w, _ in batched["top"]]
            worst = max(abs(a[1] - b[1]) for a, b in zip(single["top"], batched["top"]))
            print(f"|  | batched / single | {batched['evaluation_rate'] / single['evaluation_rate']:.1f}x | "
                  f"{batched['whole_rate'] / single['whole_rate']:.1f}x | | | | "
                  f"top 5 {'equal' if same else 'DIFFER'} (max train difference {worst:.1e}) |")
            failed |= not same
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Evaluation speed: this tree's ``evaluate`` against a reference commit's, side by side on
the same trained runs, with the per-image numbers compared.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/eval_speed.py \
        --run runs/default --run runs/mnist-hvae [--reference 681cb21] [--images 200] [--iw-samples 5000]

Protocol:

1. The reference commit's ``tfvae/`` is extracted with ``git archive`` into a temporary
   folder; this tree's is used as it is.
2. For each run, each code evaluates the run's first ``--images`` test images (binarized as
   ``evaluate`` does, the best checkpoint) with K = ``--iw-samples`` importance samples and
   sampling seed 0, through ``tfvae.evaluate.evaluate_images`` with that code's default
   ``chunk`` and output layer, in its own subprocess, ``--repeats`` times each, alternated
   (reference, this tree, reference, ...), the fastest kept. Each first evaluates two
   images (tracing and warm-up, not timed), then times all ``--images``.
3. Recorded per run: both wall times (seconds, each repeat and the fastest), test images
   per second, the speed-up (reference seconds / this tree's), the minutes the whole test
   split would take at each code's rate (``test_split_minutes``), the largest per-image
   |Δ NLL| and |Δ −ELBO| between the two codes (nats), the largest |Δ NLL| between two
   runs of the reference (the run-to-run floor of TensorFlow's CPU kernels), and both
   mean NLLs. The machine's float32 matmul peak, CPU and
   versions go to ``bench/results/eval_speed.json``. The machine should have nothing else to
   do (the load average before and after is recorded).

The whole test split takes N/``--images`` times as long at the same rate (the work per
image does not depend on which image it is).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evidence import ROOT, one_line_errors, result_name, write_result  # noqa: E402

REFERENCE = "681cb21"  # main before issue 28's evaluation changes

WORKER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from tfvae.data import binarize_fixed
from tfvae.evaluate import evaluate_images
from tfvae.rundir import load_model, run_dataset

run, k, n, out = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
model, cfg = load_model(run, "best")
data = run_dataset(run, cfg)
x = binarize_fixed(data.test[:n], cfg.data.binarization, cfg.data.binarization_seed)
evaluate_images(model, x[:2], iw_samples=k, seed=0, progress=False)  # trace and warm up
start = time.perf_counter()
result = evaluate_images(model, x, iw_samples=k, seed=0, progress=False)
seconds = time.perf_counter() - start
np.savez(out, nll=result["nll"], neg_elbo=result["neg_elbo"])
print(json.dumps({"seconds": seconds, "test_images": len(data.test)}))
"""


def measure(code_root: Path, run: Path, k: int, n: int, work: Path, label: str) -> dict:
    """One code's evaluation of ``run`` in a subprocess: seconds and per-image arrays."""
    out = work / f"{label}.npz"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(code_root)}
    done = subprocess.run([sys.executable, "-c", WORKER, str(code_root), str(run), str(k), str(n), str(out)],
                          capture_output=True, text=True, env=env, cwd=str(ROOT))
    if done.returncode != 0:
        sys.exit(f"error: evaluating {run} with {label} failed: {done.stderr.strip().splitlines()[-1:]}")
    import numpy as np

    arrays = np.load(out)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": report["seconds"], "test_images": report.get("test_images"),
            "nll": arrays["nll"], "neg_elbo": arrays["neg_elbo"]}


def main(argv=None) -> None:
    parser = one_line_errors(argparse.ArgumentParser(description=__doc__,
                                                     formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--run", type=Path, action="append", required=True, help="a trained run (repeatable)")
    parser.add_argument("--reference", default=REFERENCE, help="the commit whose evaluation is compared")
    parser.add_argument("--images", type=int, default=200, help="test images evaluated (the first N)")
    parser.add_argument("--iw-samples", type=int, default=5000, help="K importance samples per image")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each code, alternated (best kept)")
    parser.add_argument("--result", type=result_name, default="eval_speed", help="bench/results/NAME.json")
    args = parser.parse_args(argv)
    for run in args.run:
        if not (run / "summary.json").is_file():
            parser.error(f"--run {run} is not a finished run (no summary.json)")
    if args.images < 2 or args.iw_samples < 1 or args.repeats < 1:
        parser.error("--images must be at least 2, --iw-samples and --repeats at least 1")
    import numpy as np

    rows = {}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="tfvae-eval-speed-") as tmp:
        work = Path(tmp)
        reference_root = work / "reference"
        reference_root.mkdir()
        archive = subprocess.run(["git", "archive", args.reference, "tfvae"], cwd=ROOT, capture_output=True)
        if archive.returncode != 0:
            parser.error(f"--reference {args.reference}: {archive.stderr.decode().strip()[:200]}")
        subprocess.run(["tar", "-x", "-C", str(reference_root)], input=archive.stdout, check=True)
        for run in args.run:
            print(f"{run}: reference {args.reference}, then this tree ({args.images} images, K = {args.iw_samples})",
                  flush=True)
            refs, news = [], []
            for _ in range(args.repeats):  # alternated, so a drift of the machine's speed hits both
                refs.append(measure(reference_root, run.resolve(), args.iw_samples, args.images, work, "reference"))
                news.append(measure(ROOT, run.resolve(), args.iw_samples, args.images, work, "current"))
            ref, new = min(refs, key=lambda r: r["seconds"]), min(news, key=lambda r: r["seconds"])
            rows[run.name] = {
                "model": json.loads((run / "config.json").read_text())["model"]["model"],
                "trained_epochs": json.loads((run / "summary.json").read_text()).get("epochs"),
                "reference_seconds": ref["seconds"], "seconds": new["seconds"],
                "reference_images_per_second": args.images / ref["seconds"],
                "images_per_second": args.images / new["seconds"],
                "speedup": ref["seconds"] / new["seconds"],
                # the whole test split at this rate (the work per image does not depend on the image)
                "test_images": new["test_images"],
                "test_split_minutes": new["test_images"] * new["seconds"] / args.images / 60,
                "reference_test_split_minutes": new["test_images"] * ref["seconds"] / args.images / 60,
                "max_abs_nll_difference": float(np.max(np.abs(ref["nll"] - new["nll"]))),
                "max_abs_neg_elbo_difference": float(np.max(np.abs(ref["neg_elbo"] - new["neg_elbo"]))),
                # the floor: the same code run twice (TensorFlow's CPU kernels need not sum in one order)
                "max_abs_nll_difference_between_reference_runs":
                    float(np.max(np.abs(refs[0]["nll"] - refs[-1]["nll"]))),
                "reference_seconds_each": [r["seconds"] for r in refs], "seconds_each": [r["seconds"] for r in news],
                "reference_nll": float(np.mean(ref["nll"])), "nll": float(np.mean(new["nll"])),
            }
            print(json.dumps(rows[run.name]), flush=True)
    load.append(os.getloadavg()[0])
    write_result(args.result, {"reference_commit": args.reference, "images": args.images,
                               "iw_samples": args.iw_samples, "sampling_seed": 0, "units": "seconds; nats per image",
                               "load_average_before_after": load, "runs": rows})


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""How much the importance-weighted NLL estimate drops from a smaller K to a larger one, per
image, on the same trained run: the cost in nats of evaluating with fewer samples.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/k_gap.py \
        --run runs/mnist-hvae-maps --images 500 --iw-samples 1000 --iw-samples 5000 --result k_gap_maps

Protocol:

1. The run's best checkpoint evaluates its first ``--images`` test images (binarized as
   ``python cli.py evaluate`` does) with each K of ``--iw-samples`` and sampling seed 0,
   through :func:`tfvae.evaluate.evaluate_images`, the function ``evaluate`` calls (two
   images first for each K, tracing and warm-up, not timed).
2. Image i's K samples are the first K·D draws of its own generator
   (:func:`tfvae.evaluate.image_streams`), so the samples of a smaller K are the first ones
   of a larger K's: the estimates are nested and their difference is paired per image.
3. Recorded per K: the mean NLL (nats per image), its standard error over images, the
   seconds taken; per pair (smaller K, larger K): the mean per-image difference
   NLL_small − NLL_large (nats; positive when the larger K gives the tighter bound, as it
   does in expectation, Burda et al. 2015 Theorem 1), its standard error over images, its
   smallest and largest value, and the share of images where it is positive.
4. When the run's ``eval.json`` evaluated all test images with the smallest K (its
   protocol recorded there), the file also records that figure and the figure it implies for
   the largest K: the whole split's NLL at the smallest K minus the mean gap measured here,
   with the two standard errors added in quadrature. That is an estimate from a subset of the
   images, and the README says so wherever it shows it.

The float32 matmul peak, CPU and versions go to ``bench/results/NAME.json`` with the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evidence import one_line_errors, result_name, write_result  # noqa: E402


def main(argv=None) -> None:
    parser = one_line_errors(argparse.ArgumentParser(description=__doc__,
                                                     formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--run", type=Path, required=True, help="a trained run")
    parser.add_argument("--images", type=int, default=500, help="test images evaluated (the first N)")
    parser.add_argument("--iw-samples", type=int, action="append", default=None,
                        help="a K (repeatable, at least two; default 1,000 and 5,000)")
    parser.add_argument("--result", type=result_name, default="k_gap", help="bench/results/NAME.json")
    args = parser.parse_args(argv)
    ks = sorted(set(args.iw_samples or [1000, 5000]))
    if not (args.run / "summary.json").is_file():
        parser.error(f"--run {args.run} is not a finished run (no summary.json)")
    if len(ks) < 2 or ks[0] < 1:
        parser.error("--iw-samples: give at least two different K, each at least 1")
    if args.images < 2:
        parser.error("--images must be at least 2 (a standard error needs two images)")
    import numpy as np

    from tfvae.data import binarize_fixed
    from tfvae.evaluate import evaluate_images, standard_error
    from tfvae.rundir import load_model, run_dataset

    model, cfg = load_model(args.run, "best")
    data = run_dataset(args.run, cfg)
    if args.images > len(data.test):
        parser.error(f"--images {args.images}: the test split has {len(data.test)} images")
    x = binarize_fixed(data.test[:args.images], cfg.data.binarization, cfg.data.binarization_seed)
    labels = None if data.test_labels is None else data.test_labels[:args.images]  # a conditional VAE's log p(x|y)
    load = [os.getloadavg()[0]]
    nll, per_k = {}, {}
    for k in ks:
        evaluate_images(model, x[:2], iw_samples=k, seed=0, progress=False,  # tracing and warm-up, not timed
                        labels=None if labels is None else labels[:2])
        print(f"{args.run}: K = {k:,} on the first {args.images:,} test images", flush=True)
        start = time.perf_counter()
        nll[k] = np.asarray(evaluate_images(model, x, iw_samples=k, seed=0, labels=labels)["nll"], dtype=np.float64)
        per_k[str(k)] = {"nll": float(nll[k].mean()), "nll_stderr": standard_error(nll[k]),
                         "seconds": time.perf_counter() - start}
        print(json.dumps({k: per_k[str(k)]}), flush=True)
    load.append(os.getloadavg()[0])
    pairs = []
    for small, large in zip(ks, ks[1:]):
        gap = nll[small] - nll[large]
        pairs.append({"small_k": small, "large_k": large, "mean_gap": float(gap.mean()),
                      "gap_stderr": standard_error(gap),
                      "min_gap": float(gap.min()), "max_gap": float(gap.max()),
                      "share_positive": float(np.mean(gap > 0))})
    figures = {"run": args.run.name, "model": cfg.model.model,
               "trained_epochs": json.loads((args.run / "summary.json").read_text()).get("epochs"),
               "images": args.images, "first_image": 0, "sampling_seed": 0, "checkpoint": "best",
               "units": "nats per image; seconds", "per_k": per_k, "pairs": pairs,
               "load_average_before_after": load}
    report = args.run / "eval.json"
    if report.is_file():
        whole = json.loads(report.read_text())
        p, m = whole["protocol"], whole["metrics"]
        if p.get("iw_samples") == ks[0] and p.get("num_images") == len(data.test) and p.get("first_image", 0) == 0:
            total = sum(q["mean_gap"] for q in pairs)
            total_se = math.sqrt(sum(q["gap_stderr"] ** 2 for q in pairs))
            figures["test_split"] = {
                "iw_samples": ks[0], "num_images": p["num_images"], "nll": m["nll"], "nll_stderr": m["nll_stderr"],
                "estimated_large_k": ks[-1], "estimated_nll": m["nll"] - total,
                "estimated_nll_stderr": math.sqrt(m["nll_stderr"] ** 2 + total_se ** 2),
                "estimate": f"NLL at K = {ks[0]:,} on all {p['num_images']:,} test images minus the mean "
                            f"K = {ks[0]:,} → {ks[-1]:,} gap on the first {args.images:,} (standard errors "
                            "added in quadrature)"}
    write_result(args.result, figures)


if __name__ == "__main__":
    main()

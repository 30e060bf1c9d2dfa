#!/usr/bin/env python
"""What each lever buys the hierarchical VAE, at the same budget (issue 29's table).

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/hvae_levers.py \
        [--epochs 40] [--iw-samples 1000] [--max-examples 2000] [--only NAME ...]

Every row trains ``python cli.py train --preset mnist-hvae --epochs E`` (the hierarchical
VAE's recipe: cosine decay over the E epochs, EMA 0.999, free bits 0.1) plus one lever's
options, into ``--root``/NAME (a finished run is reused, an interrupted one resumed), then
evaluates its best-validation weights on the first N test images with K importance samples
(dynamic binarization, seed 0; cached as ``RUN_DIR/eval-k<K>-n<N>.json``). Rows have the
same epochs, so a lever that costs more per epoch shows it in its minutes, not in fewer
updates.

Per row the result records the curve (validation −ELBO per epoch), training minutes and
seconds per epoch, the test NLL ± its standard error, the −ELBO, KL and active units per
latent group, the decoder's FLOPs per sample (the importance-weighted evaluation's cost
grows with them) and parameters; it copies the run's samples, reconstructions and loss
curve to ``bench/results/hvae_levers/NAME/``. The machine's matmul peak is measured once
in the same run. ``bench/results/hvae_levers.json`` gets every row measured so far (rows
from earlier runs of this script are kept, each with its own machine facts), and the
README's table renders it (``bench/readme_tables.py``).

The protocol is cheaper than the likelihood table's (K = 5,000 on all 10,000 test images):
a probe ranks levers; the chosen recipe is then measured with the full protocol.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import ROOT, train_once  # noqa: E402
from _evidence import RESULTS, matmul_peak_gflops, one_line_errors, write_result  # noqa: E402

BASE = ["--dataset", "mnist", "--preset", "mnist-hvae"]
ROWS = [
    ("baseline", "`--preset mnist-hvae` (5 vector groups)", []),
    ("maps", "+ latent maps 7×7×4 and 14×14×2 (`--group-maps 4,2`)", ["--group-maps", "4,2"]),
    ("weight-decay", "+ weight decay 0.05 (`--weight-decay 0.05`, AdamW)", ["--weight-decay", "0.05"]),
    ("iaf", "+ 2 IAF steps on each vector group's posterior (`--posterior-flows 2`)", ["--posterior-flows", "2"]),
]
FIGURES = ["samples.png", "reconstructions.png", "loss.png"]


def curve(run_dir: Path) -> list:
    """Validation −ELBO per epoch (nats per image) from the run's metrics.csv."""
    with (run_dir / "metrics.csv").open() as fh:
        return [round(float(r["val_neg_elbo"]), 4) for r in csv.DictReader(fh)]


def decoder_cost(run_dir: Path) -> dict:
    """The decoder's FLOPs per sample (nested models counted) and the parameter counts."""
    sys.path.insert(0, str(ROOT))
    from tfvae.networks import count_flops
    from tfvae.rundir import load_model

    model, _ = load_model(run_dir)
    enc = sum(int(v.numpy().size) for v in model.encoder.weights)
    dec = sum(int(v.numpy().size) for v in model.decoder.weights)
    return {"decoder_mflop_per_sample": count_flops(model.decoder) / 1e6,
            "parameters": {"encoder": enc, "decoder": dec}, "latent_dim": int(model.latent_dim)}


def main(argv=None) -> int:
    parser = one_line_errors(argparse.ArgumentParser(description=__doc__,
                                                     formatter_class=argparse.RawDescriptionHelpFormatter))
    parser.add_argument("--epochs", type=int, default=40, help="epochs of every row (the cosine decay's length)")
    parser.add_argument("--iw-samples", type=int, default=1000, help="K of the test NLL")
    parser.add_argument("--max-examples", type=int, default=2000, help="first N test images")
    parser.add_argument("--root", default="runs/levers", help="folder of the runs (kept and reused)")
    parser.add_argument("--only", nargs="*", default=None, help="rows to train and evaluate (default: all)")
    parser.add_argument("--smoke", action="store_true",
                        help="check this script in minutes: 2,000 training images, 2 epochs, K = 20 on 200 test "
                             "images, runs in a temporary folder; no result is written")
    args = parser.parse_args(argv)
    extra = []
    if args.smoke:
        import tempfile

        args.epochs, args.iw_samples, args.max_examples = 2, 20, 200
        args.root = tempfile.mkdtemp(prefix="hvae-levers-smoke-")
        extra = ["--max-train-examples", "2000", "--validation-size", "500"]
    names = [name for name, _, _ in ROWS]
    if args.only is not None and set(args.only) - set(names):
        parser.error(f"--only: unknown rows {sorted(set(args.only) - set(names))}; rows: {', '.join(names)}")
    sys.path.insert(0, str(ROOT))
    from tfvae.evaluate import evaluate_run

    root = Path(args.root) if args.smoke else ROOT / args.root
    root.mkdir(parents=True, exist_ok=True)
    peak = matmul_peak_gflops()
    out_path = RESULTS / "hvae_levers.json"
    rows = {r["name"]: r for r in json.loads(out_path.read_text())["figures"]["rows"]} \
        if out_path.is_file() and not args.smoke else {}
    for name, label, options in ROWS:
        if args.only is not None and name not in args.only:
            continue
        run_dir = root / f"{name}-e{args.epochs}"
        train_once(run_dir, *BASE, "--epochs", args.epochs, *options, *extra, "--no-tensorboard")
        report_path = run_dir / f"eval-k{args.iw_samples}-n{args.max_examples}.json"
        if not report_path.is_file():
            print(f"evaluating {run_dir.name}: K = {args.iw_samples}, first {args.max_examples} test images", flush=True)
            report = evaluate_run(run_dir, iw_samples=args.iw_samples, max_examples=args.max_examples, write=False)
            report_path.write_text(json.dumps(report, indent=2) + "\n")
        report = json.loads(report_path.read_text())
        summary = json.loads((run_dir / "summary.json").read_text())
        m = report["metrics"]
        folder = (Path(args.root) if args.smoke else RESULTS / "hvae_levers") / name
        folder.mkdir(parents=True, exist_ok=True)
        for figure in FIGURES:
            if (run_dir / "figures" / figure).is_file():
                shutil.copyfile(run_dir / "figures" / figure, folder / figure)
        rows[name] = {
            "name": name, "label": label,
            "train_command": "python cli.py train " + " ".join(map(str, BASE + ["--epochs", args.epochs] + options)),
            "epochs": summary["epochs"], "training_minutes": summary["seconds"] / 60,
            "seconds_per_epoch": summary["seconds_per_epoch"], "val_neg_elbo": curve(run_dir),
            "best_val_neg_elbo": summary["best_val_neg_elbo"],
            "test": {k: m[k] for k in ("nll", "nll_stderr", "neg_elbo", "reconstruction", "kl", "active_units",
                                       "group_dims", "kl_per_group", "active_units_per_group") if k in m},
            "protocol": report["protocol"], "eval_seconds": report["seconds"],
            **decoder_cost(run_dir), "matmul_peak_gflops": peak,
            "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "figures": [str(folder / f) if args.smoke else str((folder / f).relative_to(ROOT)) for f in FIGURES
                        if (folder / f).is_file()],
        }
        r = rows[name]
        print(f"{name}: test NLL {r['test']['nll']:.2f} ± {r['test']['nll_stderr']:.2f} nats "
              f"(K = {args.iw_samples}, {args.max_examples} images), best validation −ELBO "
              f"{r['best_val_neg_elbo']:.2f}, {r['training_minutes']:.1f} min", flush=True)
    if args.smoke:
        print(f"smoke run: nothing written (runs in {args.root})")
        return 0
    ordered = [rows[n] for n in names if n in rows]
    write_result("hvae_levers", {"protocol": "each row: python cli.py train --preset mnist-hvae --epochs E plus "
                                             "its options; test NLL with K importance samples on the first N "
                                             "test images (dynamic binarization, seed 0), best-validation weights",
                                 "rows": ordered}, peak_gflops=peak,
                 sources=[f for r in ordered for f in r["figures"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""The README's likelihood table: reference architectures and ``mnist-best``, trained and
evaluated by tfvae with one protocol and seed, beside published figures.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/likelihood_table.py \
        [--iw-samples 5000] [--max-examples N] [--root runs/likelihood]

Rows (each trained through ``python cli.py train`` into ``--root``/NAME, skipped when
already finished; a symlink NAME -> an existing run reuses that run):

* keras-io example architecture (``--arch kerasio``), latent 2, 30 epochs;
* PyTorch example's MLP 784-400-20 (``--arch mlp --hidden-units 400 --latent-dim 20``), 10 epochs;
* ``--preset mnist-best``;
* ``--preset mnist-hvae`` (the hierarchical VAE).

Protocol: dynamically binarized MNIST, test split (binarized once, seed 0), the weights
with the best validation score, K importance samples (Burda et al. 2015 use K = 5,000 on
the full test set: the default here); each protocol's result is cached in
``RUN_DIR/eval-k<K>-n<N>.json``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _cli import train_once  # bench/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ROWS = [
    ("kerasio-z2", "keras-io example architecture, latent 2, 30 epochs",
     ["--arch", "kerasio", "--latent-dim", "2", "--epochs", "30"]),
    ("pytorch-mlp-z20", "PyTorch example MLP 784-400-20, 10 epochs",
     ["--arch", "mlp", "--hidden-units", "400", "--latent-dim", "20", "--epochs", "10"]),
    ("mnist-best", "tfvae `--preset mnist-best`", ["--preset", "mnist-best"]),
    ("mnist-hvae", "tfvae `--preset mnist-hvae` (hierarchical, 5 groups)", ["--preset", "mnist-hvae"]),
]
PUBLISHED = [
    ("VAE, 1 stochastic layer (Burda et al. 2015, table 1)", "86.76", "K = 5,000, dynamic binarization"),
    ("IWAE k=50, 1 stochastic layer (Burda et al. 2015, table 1)", "84.78", "K = 5,000, dynamic binarization"),
    ("LVAE, 5 stochastic layers (Sønderby et al. 2016)", "81.74", "K = 5,000, dynamic binarization"),
    ("ResNet VAE with IAF posterior (Kingma et al. 2016)", "79.10", "K = 5,000, dynamic binarization"),
    ("VampPrior, convolutional HVAE (Tomczak & Welling 2018, table 2)", "78.45 (PixelHVAE + VampPrior)",
     "K = 5,000, dynamic binarization"),
    ("NVAE (Vahdat & Kautz 2020, table 2): state of the art", "78.01", "dynamically binarized MNIST, K = 1,000"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iw-samples", type=int, default=5000)
    parser.add_argument("--max-examples", type=int, default=None, help="first N test images (default: all)")
    parser.add_argument("--root", default="runs/likelihood")
    parser.add_argument("--only", nargs="*", default=None, help="run names to train and evaluate")
    parser.add_argument("--train-only", action="store_true")
    args = parser.parse_args()
    if not args.train_only:
        from tfvae.evaluate import evaluate_run
    root = ROOT / args.root
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    lines = ["| model | test NLL (nats) | −ELBO (nats) | active units | training minutes | protocol |",
             "|---|---|---|---|---|---|"]
    for name, label, options in ROWS:
        if args.only is not None and name not in args.only:
            continue
        run_dir = root / name
        train_once(run_dir, "--dataset", "mnist", *options)
        if args.train_only:
            continue
        # Cached per protocol beside (never over) the run's eval.json.
        report_path = run_dir / f"eval-k{args.iw_samples}-n{args.max_examples or 'all'}.json"
        if not report_path.is_file():
            print(f"evaluating {run_dir.name}: K = {args.iw_samples}, test images: {args.max_examples or 'all'}",
                  flush=True)
            report = evaluate_run(run_dir, iw_samples=args.iw_samples, max_examples=args.max_examples, write=False)
            report_path.write_text(json.dumps(report, indent=2) + "\n")
        report = json.loads(report_path.read_text())
        m, p = report["metrics"], report["protocol"]
        minutes = json.loads((run_dir / "summary.json").read_text())["seconds"] / 60
        rows.append({"name": name, "label": label, "train_options": options, "protocol": p,
                     "metrics": {k: v for k, v in m.items() if k not in ("activity_per_dim", "kl_per_dim")},
                     "training_minutes": minutes, "eval_seconds": report["seconds"]})
        lines.append(f"| {label} | {m['nll']:.2f} ± {m['nll_stderr']:.2f} | {m['neg_elbo']:.2f} | "
                     f"{m['active_units']} of {m['latent_dim']} | {minutes:.0f} | K = {p['iw_samples']:,}, "
                     f"{p['num_images']:,} test images |")
    for label, nll, protocol in PUBLISHED:
        lines.append(f"| {label} | {nll} | | | | {protocol} (published) |")
    print("\n".join(lines))
    if not args.train_only and args.only is None:
        from _evidence import write_result

        write_result("likelihood_table", {"rows": rows, "published": [
            {"label": label, "nll": nll, "protocol": protocol} for label, nll, protocol in PUBLISHED]})


if __name__ == "__main__":
    main()

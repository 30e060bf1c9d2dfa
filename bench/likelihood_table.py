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
* ``--preset mnist-hvae`` (the hierarchical VAE);
* the anchor: LVAE's published MNIST model (Sønderby et al. 2016, section 3) trained by
  tfvae's hierarchical VAE within tfvae's budget (:data:`LVAE_EPOCHS`), so the published
  LVAE figure below has a measured counterpart on the same machine (issue 29). Taken from
  the paper: five latent groups of 64, 32, 16, 8 and 4 dimensions (bottom first), MLP
  networks, and its training scheme, a deterministic KL warm-up (here over the first tenth
  of the epochs) instead of free bits. Set here: MLP 512-256, Adam at 0.002 on batches of
  256, a constant learning rate, no EMA. What differs from the paper: tfvae's residual
  top-down cells of one width (256) instead of LVAE's 512-256-128-64-32 layers with batch
  normalization, and far fewer epochs.

Rows measured by an earlier run of this script are kept (each with its own machine's matmul
peak and date), so ``--only NAME`` measures one row into the committed table. Per row it
records the validation −ELBO per epoch, training minutes and seconds per epoch, and copies
the run's samples, reconstructions and loss curve to ``bench/results/likelihood_table/NAME/``.

Protocol: dynamically binarized MNIST, test split (binarized once, seed 0), the weights
with the best validation score, K importance samples (Burda et al. 2015 use K = 5,000 on
the full test set: the default here); each protocol's result is cached in
``RUN_DIR/eval-k<K>-n<N>.json``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from _cli import train_once  # bench/ is on sys.path when a script here runs
from hvae_levers import FIGURES, curve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Sized within issue 29's training budget for a 2-core CPU from a 3-epoch probe of the recipe on
# 10,000 training images (AMD EPYC); the run records its own minutes.
LVAE_EPOCHS = 250
LVAE = ["--model", "hvae", "--arch", "mlp", "--hidden-units", "512,256", "--group-dims", "4,8,16,32,64",
        "--hvae-width", "256", "--free-bits", "0", "--ema-decay", "0", "--lr-schedule", "constant",
        "--learning-rate", "0.002", "--batch-size", "256", "--epochs", str(LVAE_EPOCHS),
        "--kl-warmup-epochs", str(LVAE_EPOCHS // 10)]
ROWS = [
    ("kerasio-z2", "keras-io example architecture, latent 2, 30 epochs",
     ["--arch", "kerasio", "--latent-dim", "2", "--epochs", "30"]),
    ("pytorch-mlp-z20", "PyTorch example MLP 784-400-20, 10 epochs",
     ["--arch", "mlp", "--hidden-units", "400", "--latent-dim", "20", "--epochs", "10"]),
    ("mnist-best", "tfvae `--preset mnist-best`", ["--preset", "mnist-best"]),
    ("mnist-hvae", "tfvae `--preset mnist-hvae` (hierarchical, 5 groups)", ["--preset", "mnist-hvae"]),
    ("lvae-recipe", f"LVAE's MNIST recipe (Sønderby et al. 2016) in tfvae's hierarchical VAE, {LVAE_EPOCHS} epochs",
     LVAE),
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
    names = [name for name, _, _ in ROWS]
    if args.only is not None and set(args.only) - set(names):
        parser.error(f"--only: unknown rows {sorted(set(args.only) - set(names))}; rows: {', '.join(names)}")
    root = ROOT / args.root
    root.mkdir(parents=True, exist_ok=True)
    from _evidence import RESULTS, matmul_peak_gflops, write_result

    out_path = RESULTS / "likelihood_table.json"
    kept = {r["name"]: r for r in json.loads(out_path.read_text())["figures"]["rows"]} if out_path.is_file() else {}
    peak = None if args.train_only else matmul_peak_gflops()
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
        folder = RESULTS / "likelihood_table" / name
        folder.mkdir(parents=True, exist_ok=True)
        for figure in FIGURES:
            if (run_dir / "figures" / figure).is_file():
                shutil.copyfile(run_dir / "figures" / figure, folder / figure)
        summary = json.loads((run_dir / "summary.json").read_text())
        kept[name] = {"name": name, "label": label, "train_options": options, "protocol": p,
                      "metrics": {k: v for k, v in m.items() if k not in ("activity_per_dim", "kl_per_dim")},
                      "training_minutes": minutes, "epochs": summary["epochs"],
                      "seconds_per_epoch": summary["seconds_per_epoch"], "val_neg_elbo": curve(run_dir),
                      "eval_seconds": report["seconds"], "matmul_peak_gflops": peak,
                      "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "figures": [str((folder / f).relative_to(ROOT)) for f in FIGURES if (folder / f).is_file()]}
        lines.append(f"| {label} | {m['nll']:.2f} ± {m['nll_stderr']:.2f} | {m['neg_elbo']:.2f} | "
                     f"{m['active_units']} of {m['latent_dim']} | {minutes:.0f} | K = {p['iw_samples']:,}, "
                     f"{p['num_images']:,} test images |")
    for label, nll, protocol in PUBLISHED:
        lines.append(f"| {label} | {nll} | | | | {protocol} (published) |")
    print("\n".join(lines))
    if not args.train_only:
        ordered = [kept[n] for n in names if n in kept]
        write_result("likelihood_table", {"rows": ordered, "published": [
            {"label": label, "nll": nll, "protocol": protocol} for label, nll, protocol in PUBLISHED]},
            peak_gflops=peak, sources=[f for r in ordered for f in r.get("figures", [])])


if __name__ == "__main__":
    main()

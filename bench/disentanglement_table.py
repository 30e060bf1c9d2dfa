#!/usr/bin/env python
"""VAE, β-VAE (β = 4, 8) and β-TCVAE (β = 6) on the dSprites-style data, same networks and
training budget; the four disentanglement metrics and the reconstruction term of each.

    python bench/disentanglement_table.py            # trains what is missing under runs/disentanglement

Trains each through the CLI (resuming a run that did not finish, skipping one that did),
runs ``python cli.py disentanglement`` on it with the default protocol, disentanglement_lib's
study's (seed 0; MIG and DCI on 10,000 points, DCI tested on 5,000; FactorVAE and β-VAE
scores on 10,000 training and 5,000 evaluation votes of 64 images; the FactorVAE score
leaves out dimensions with standard deviation under 0.05), copies each ``disentanglement.json`` and traversal
figure into ``bench/results/disentanglement/`` and writes
``bench/results/disentanglement_table.json`` with the training budget (epochs, images,
optimizer steps, minutes) of every row.

Networks: Locatello et al. 2019's (four stride-2 convolutions 32-32-64-64, a dense layer
of 256, 10 latent dimensions, Bernoulli likelihood), trained with Adam on a slice of the
training split (``--max-train-examples``); their budget is 300,000 steps of 64 images,
far beyond a 2-core CPU, so the table says how far each run got.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

from _cli import cli, train_once  # bench/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]

MODELS = [  # (run name, train options)
    ("vae", ["--model", "vae"]),
    ("beta-vae-4", ["--model", "vae", "--beta", "4"]),
    ("beta-vae-8", ["--model", "vae", "--beta", "8"]),
    ("beta-tcvae-6", ["--model", "btcvae", "--beta", "6"]),
]
NETWORKS = ["--latent-dim", "10", "--conv-filters", "32,32,64,64", "--hidden-units", "256"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-train-examples", type=int, default=100000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--root", default="runs/disentanglement")
    parser.add_argument("--out", default="bench/results/disentanglement")
    parser.add_argument("--only", nargs="*", default=None, help="run names to train and score (default: all)")
    args = parser.parse_args()
    root, out = ROOT / args.root, ROOT / args.out
    root.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, options in MODELS:
        if args.only is not None and name not in args.only:
            continue
        run_dir = root / name
        train_once(run_dir, "--dataset", "dsprites", "--max-train-examples", args.max_train_examples,
                   "--epochs", args.epochs, "--batch-size", args.batch_size, "--no-tensorboard", *NETWORKS, *options)
        start = time.perf_counter()
        cli("disentanglement", run_dir)
        seconds = time.perf_counter() - start
        shutil.copyfile(run_dir / "disentanglement.json", out / f"{name}.json")
        shutil.copyfile(run_dir / "figures" / "disentanglement_traverse.png", out / f"{name}_traverse.png")
        result = json.loads((run_dir / "disentanglement.json").read_text())
        config = json.loads((run_dir / "config.json").read_text())
        with open(run_dir / "metrics.csv", newline="") as fh:
            epochs = list(csv.DictReader(fh))
        images = config["meta"]["num_train"]
        rows.append({"run": name, "model": config["model"]["model"], "beta": config["train"]["beta"],
                     **result["metrics"], "reconstruction": result["reconstruction"],
                     "epochs": len(epochs), "train_images": images,
                     "steps": len(epochs) * -(-images // config["train"]["batch_size"]),
                     "batch_size": config["train"]["batch_size"],
                     "train_minutes": sum(float(e["epoch_seconds"]) for e in epochs) / 60,
                     "metric_seconds": seconds, "figure": f"{args.out}/{name}_traverse.png",
                     "result": f"{args.out}/{name}.json"})
        print(f"{name}: MIG {result['metrics']['mig']:.3f}", flush=True)
    from _evidence import write_result

    write_result("disentanglement_table", {"rows": rows, "protocol": "python cli.py disentanglement RUN (defaults)",
                                           "networks": " ".join(NETWORKS)},
                 sources=[r["result"] for r in rows])


if __name__ == "__main__":
    main()

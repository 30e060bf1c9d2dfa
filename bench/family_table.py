#!/usr/bin/env python
"""The lectures' model family on real MNIST, same latent size: PCA, autoencoder, VAE, β=4
VAE, conditional VAE, IWAE (k=5). Trains each through the CLI (skipping runs that
already finished), then runs ``compare`` and prints its Markdown table.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/family_table.py \
        --epochs 10 --latent-dim 32 --iw-samples 500 --max-examples 5000 --root runs/family \
        --out bench/results/family

Every number comes from the test split (dynamic binarization seed 0; the first
``--max-examples`` images for NLL and reconstruction, all 10,000 as the reference of the
sample Fréchet distance) and is in nats per image; NLL uses K importance samples
(``--iw-samples``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _cli import cli, train_once  # bench/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parents[1]

MODELS = [  # (run name, train options)
    ("pca", ["--model", "pca"]),
    ("ae", ["--model", "ae"]),
    ("vae", ["--model", "vae"]),
    ("vae-beta4", ["--model", "vae", "--beta", "4"]),
    ("cvae", ["--model", "cvae"]),
    ("iwae-k5", ["--model", "vae", "--objective", "iwae", "--train-iw-samples", "5"]),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--iw-samples", type=int, default=500)
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--max-examples", type=int, default=None, help="first N test images for NLL and reconstruction")
    parser.add_argument("--root", default="runs/family")
    parser.add_argument("--out", default="bench/results/family")
    parser.add_argument("--only", nargs="*", default=None, help="run names to train (default: all)")
    args = parser.parse_args()
    root = ROOT / args.root
    root.mkdir(parents=True, exist_ok=True)
    runs = []
    for name, options in MODELS:
        run_dir = root / name
        runs.append(run_dir)
        if (run_dir / "summary.json").is_file() or (args.only is not None and name not in args.only):
            continue
        start = time.perf_counter()
        train_once(run_dir, "--dataset", "mnist", "--latent-dim", args.latent_dim, "--epochs", args.epochs, *options)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    if args.only is not None:
        return
    subset = ["--max-examples", args.max_examples] if args.max_examples else []
    for run_dir in runs:
        if (run_dir / "config.json").is_file() and not (run_dir / "eval.json").is_file() \
                and not any(run_dir.name == n for n, _ in MODELS[:2]):
            cli("evaluate", run_dir, "--iw-samples", args.iw_samples, *subset)
    cli("compare", *runs, "--out", ROOT / args.out, "--samples", args.samples, "--iw-samples", args.iw_samples,
        *subset, "--force")
    for run_dir in runs:
        if (run_dir / "config.json").is_file() and run_dir.name != "pca":
            cli("traverse", run_dir, "--dims", 8)
    print((ROOT / args.out / "compare.md").read_text())
    from _evidence import write_result

    out = Path(args.out)
    write_result("family_table", {"epochs": args.epochs, "latent_dim": args.latent_dim, "iw_samples": args.iw_samples,
                                  "samples": args.samples, "max_examples": args.max_examples,
                                  "table": str(out / "compare.csv")},
                 sources=[str(out / "compare.csv"), str(out / "compare.md")])


if __name__ == "__main__":
    main()

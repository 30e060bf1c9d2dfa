"""Image folders measured end to end, through the CLI:

1. Fashion-MNIST written as PNG files (train/ and test/, class sub-folders) trained with
   ``--image-dir``, against the same settings on ``--dataset fashion_mnist`` (TFDS): the
   test NLL of each (the same 10,000 test images; the folder run's validation images
   differ, since the folder lists training files class by class).
2. A colour folder: MNIST digits tinted with a random colour per image, padded to
   32×32×3, saved alternately as PNG and JPEG; trained with the Gaussian and the
   discretized-logistic likelihoods; test NLL in nats and bits/dim.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/image_folders.py [--epochs 10] [--iw-samples 200]

Writes ``bench/results/image_folders.json`` and copies each run's figures to
``bench/results/image_folders/``.

With ``--model vqvae`` it trains the VQ-VAE (its defaults otherwise) on the runs the VQ-VAE
paper's comparison needs, Fashion-MNIST (TFDS) and the colour folder with the discretized
logistic, with the same epochs, images and test protocol as the VAE runs above; its bound
(K = 1) is in bits/dim beside their importance-weighted NLL. It writes
``bench/results/image_folders_vqvae.json`` and ``bench/results/image_folders_vqvae/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import ROOT, cli  # noqa: E402
from _evidence import RESULTS, write_result  # noqa: E402


def _tfds(name, split):
    import tensorflow_datasets as tfds

    return tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, data_dir=os.environ.get("TFDS_DATA_DIR")))


def write_fashion_png(root: Path) -> Path:
    """Fashion-MNIST's 70,000 images as PNG files in ROOT/{train,test}/<label>/<index>.png."""
    from PIL import Image

    if (root / "done").is_file():
        return root
    for split in ("train", "test"):
        ds = _tfds("fashion_mnist", split)
        for i, (img, label) in enumerate(zip(ds["image"], ds["label"])):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[..., 0]).save(folder / f"{i:05d}.png")
    (root / "done").write_text("")
    return root


def write_tinted_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """MNIST digits × a random colour in [0.3, 1]³ per image, padded to 32×32×3, as PNG
    (odd indices) and JPEG quality 95 (even) files in ROOT/{train,test}/<label>/."""
    from PIL import Image

    if (root / "done").is_file():
        return root
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        ds = _tfds("mnist", f"{split}[:{n}]")
        for i, (img, label) in enumerate(zip(ds["image"], ds["label"])):
            digit = np.pad(img[..., 0], 2).astype(np.float32)[..., None] / 255.0
            rgb = np.round(digit * rng.uniform(0.3, 1.0, 3) * 255).astype(np.uint8)
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            if i % 2:
                Image.fromarray(rgb).save(folder / f"{i:05d}.png")
            else:
                Image.fromarray(rgb).save(folder / f"{i:05d}.jpg", quality=95)
    (root / "done").write_text("")
    return root


def run(work: Path, name: str, train_args: list, iw_samples: int, stem: str = "image_folders") -> dict:
    run_dir = work / name
    if not (run_dir / "summary.json").is_file():
        shutil.rmtree(run_dir, ignore_errors=True)
        cli("train", *train_args, "--run-dir", run_dir)
    cli("evaluate", run_dir, "-k", iw_samples)
    out = RESULTS / stem / name
    out.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "summary.json", "metrics.csv", "eval.json", "prior_metrics.csv"):
        if (run_dir / f).is_file():
            shutil.copyfile(run_dir / f, out / f)
    for png in (run_dir / "figures").glob("*.png"):
        shutil.copyfile(png, out / png.name)
    report = json.loads((run_dir / "eval.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"train_command": "python cli.py train " + " ".join(map(str, train_args)),
            "seconds": summary["seconds"] + (summary.get("artifacts_seconds") or 0.0),  # a VQ-VAE's prior included
            "metrics": report["metrics"], "protocol": report["protocol"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/image-folders", help="where the folders and runs are written")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--iw-samples", type=int, default=200)
    ap.add_argument("--colour-train", type=int, default=20000)
    ap.add_argument("--colour-test", type=int, default=2000)
    ap.add_argument("--model", choices=["vae", "vqvae"], default="vae",
                    help="vqvae: the VQ-VAE on Fashion-MNIST and the colour folder (logistic) instead")
    args = ap.parse_args(argv)
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.time()
    tinted = write_tinted_mnist(work / "tinted-mnist", args.colour_train, args.colour_test)
    common = ["--epochs", args.epochs]
    if args.model == "vqvae":
        return vqvae_runs(work, tinted, common, args, start)
    fashion = write_fashion_png(work / "fashion-png")
    figures = {"epochs": args.epochs, "iw_samples": args.iw_samples, "runs": {}}
    figures["runs"]["fashion_tfds"] = run(work, "fashion_tfds", ["--dataset", "fashion_mnist", *common],
                                          args.iw_samples)
    figures["runs"]["fashion_png"] = run(work, "fashion_png", ["--image-dir", fashion, *common], args.iw_samples)
    for likelihood in ("gaussian", "logistic"):
        figures["runs"][f"colour_{likelihood}"] = run(
            work, f"colour_{likelihood}", ["--image-dir", tinted, "--likelihood", likelihood, *common],
            args.iw_samples)
    figures["colour_folder"] = {"train": args.colour_train, "test": args.colour_test,
                                "what": "MNIST digits x a random colour in [0.3, 1]^3, padded to 32x32x3, "
                                        "PNG (odd indices) and JPEG quality 95 (even)"}
    figures["total_minutes"] = (time.time() - start) / 60
    write_result("image_folders", figures)
    return 0


def vqvae_runs(work: Path, tinted: Path, common: list, args, start: float) -> int:
    """The VQ-VAE's runs on the VAE runs' data (same epochs and test images); its bound needs
    one sample (the posterior is a point mass), so evaluation uses K = 1."""
    vq = ["--model", "vqvae", *common]
    figures = {"epochs": args.epochs, "iw_samples": 1, "runs": {}}
    figures["runs"]["fashion_tfds"] = run(work, "vqvae_fashion_tfds", ["--dataset", "fashion_mnist", *vq], 1,
                                          "image_folders_vqvae")
    figures["runs"]["colour_logistic"] = run(work, "vqvae_colour_logistic",
                                             ["--image-dir", tinted, "--likelihood", "logistic", *vq], 1,
                                             "image_folders_vqvae")
    figures["colour_folder"] = {"train": args.colour_train, "test": args.colour_test}
    figures["total_minutes"] = (time.time() - start) / 60
    write_result("image_folders_vqvae", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

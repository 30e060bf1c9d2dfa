"""Input pipeline: the image-folder reader (files decoded inside tf.data) against the
in-memory reader (uint8 arrays), and what a larger folder costs in memory.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/input_bench.py [--work runs/input-bench]

Writes MNIST's training images as PNG files (class sub-folders) into a 6,000-file and a
60,000-file folder, then, each in a fresh process (so peak RSS is its own):

* ``folder-6000``, ``folder-60000``: scan the folder (every file decoded once) and run
  one epoch of ``train_pipeline`` over the files (batch 128, dynamic binarization, noise);
* ``memory-60000``: the same epoch over the 60,000 images held as a uint8 array;
* ``train``: the default model's training steps on in-memory batches (images/s), the
  rate the reader must keep up with.

Reported: images/s of each reader (epoch after the scan; the scan's own time apart),
peak RSS of each process after TensorFlow's start-up (MB; the kernel's peak mark is
reset then), the 60,000-file folder's peak minus the 6,000-file one's
(goal: under 300 MB), and reader rate / training rate (goal: above 1, the reader is not
the bottleneck). Writes ``bench/results/input_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli import ROOT  # noqa: E402

BATCH = 128


def write_folder(root: Path, n: int) -> Path:
    """The first n MNIST training images as PNG files in ROOT/<label>/<index>.png."""
    from PIL import Image
    import tensorflow_datasets as tfds

    if (root / "done").is_file():
        return root
    ds = tfds.as_numpy(tfds.load("mnist", split=f"train[:{n}]", batch_size=-1,
                                 data_dir=os.environ.get("TFDS_DATA_DIR")))
    for i, (img, label) in enumerate(zip(ds["image"], ds["label"])):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0]).save(folder / f"{i:05d}.png")
    (root / "done").write_text("")
    return root


def _status_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process from /proc/self/status, MB; falls
    back to ru_maxrss where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM), so the peak measured next is the
    reader's, not TensorFlow's start-up (Linux: /proc/self/clear_refs, value 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_mb() -> float:
    return _status_mb("VmHWM")


def child(kind: str, arg: str) -> dict:
    """One measurement in this (fresh) process; returns its figures."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf  # noqa: F401

    from tfvae.data import train_pipeline

    tf.constant(0.0) + 1.0  # TensorFlow's start-up, before the peak is reset
    _reset_peak()
    out = {"kind": kind, "rss_after_import_mb": _status_mb("VmRSS")}
    if kind == "train":
        import keras

        from tfvae.config import RunConfig
        from tfvae.models import build_model

        cfg = RunConfig().resolved()
        cfg.model.model, cfg.model.latent_dim = "vae", 32  # the one-layer VAE these figures were made with
        cfg.model.image_shape = [28, 28, 1]
        images = np.random.default_rng(0).integers(0, 256, (BATCH * 8, 28, 28, 1), dtype=np.uint8)
        model = build_model(cfg.model)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        ds = train_pipeline(images, BATCH, "dynamic", 0, noise_shape=(1, cfg.model.latent_dim))
        model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)  # warm-up (tracing)
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=40, epochs=1, verbose=0)
        out["images_per_second"] = 40 * BATCH / (time.perf_counter() - start)
        return out
    if kind == "memory":
        import tensorflow_datasets as tfds

        n = int(arg)
        ds = tfds.as_numpy(tfds.load("mnist", split=f"train[:{n}]", batch_size=-1,
                                     data_dir=os.environ.get("TFDS_DATA_DIR")))
        images = ds["image"]
        out["scan_seconds"] = 0.0
    else:
        from tfvae.folder import FileImages, scan_folder

        start = time.perf_counter()
        scan = scan_folder(arg, test_fraction=0.01)
        out["scan_seconds"] = time.perf_counter() - start
        images = FileImages(scan.train_paths, (*scan.image_size, scan.channels))
    n = len(images)
    pipeline = train_pipeline(images, BATCH, "dynamic", 0, noise_shape=(1, 32))
    steps = -(-n // BATCH)
    it = iter(pipeline)
    next(it)  # start-up
    start = time.perf_counter()
    for _ in range(steps - 1):
        next(it)
    out["images"] = n
    out["images_per_second"] = (steps - 1) * BATCH / (time.perf_counter() - start)
    out["peak_rss_mb"] = _peak_mb()
    return out


def run_child(kind: str, arg: str = "") -> dict:
    cmd = [sys.executable, __file__, "--child", kind, arg]
    print("$", " ".join(cmd[1:]), flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/input-bench")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    from _evidence import write_result

    work = (ROOT / args.work).resolve()
    small, large = write_folder(work / "mnist-6000", 6000), write_folder(work / "mnist-60000", 60000)
    figures = {"batch": BATCH,
               "folder_6000": run_child("folder", str(small)),
               "folder_60000": run_child("folder", str(large)),
               "memory_60000": run_child("memory", "60000"),
               "train_default_model": run_child("train")}
    figures["extra_rss_60000_vs_6000_files_mb"] = (figures["folder_60000"]["peak_rss_mb"]
                                                   - figures["folder_6000"]["peak_rss_mb"])
    figures["folder_over_memory_rate"] = (figures["folder_60000"]["images_per_second"]
                                          / figures["memory_60000"]["images_per_second"])
    figures["folder_over_training_rate"] = (figures["folder_60000"]["images_per_second"]
                                            / figures["train_default_model"]["images_per_second"])
    figures["goals"] = {"extra_rss_mb_below": 300, "folder_over_training_rate_above": 1}
    write_result("input_bench", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

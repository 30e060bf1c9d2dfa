"""Make the pretrained export that ships with tfvae: ``exported/mnist/``.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/pretrained_mnist.py [--run-dir runs/default]

The default recipe, end to end, through the CLI:

1. train: ``python cli.py train --dataset mnist --run-dir RUN_DIR`` (skipped when RUN_DIR
   already holds a finished run; its ``config.json`` records the command that trained it);
2. evaluate: ``python cli.py evaluate RUN_DIR`` (K = 1,000, all 10,000 test images; an
   ``eval.json`` with that protocol is reused);
3. export: ``python cli.py export RUN_DIR --tflite --quantize int8 --int8-scales per-tensor
   --browser-weights float16`` into a temporary folder, of which only these files are kept
   (at most 8,000,000 bytes in git; the sizes are in the result file):

   * ``decoder_b1.tflite``, float16 weights: the browser demo's decoder, half the float32
     one's size, which would leave no room for a device variant (the pixel distance to the
     float32 decoder is measured below).
   * ``decoder_int8.tflite``, full-integer int8 (calibrated on 512 prior draws; float32 in
     and out): the device variant, about a quarter of float32, the fastest LiteRT variant
     in ``bench/results/export_bench.json`` (the dynamic-range one, about as small, ran
     many times slower there), and the form integer-only accelerators need; what
     ``generate`` picks (``--variant auto``) since the float32 decoder is not shipped. Its
     scales are per tensor: with per-channel scales the hierarchical default's two files
     took more than 8,000,000 bytes (each signature's subgraph stores its own copy of the
     scales), and per-tensor scales moved the pixels about as much on 256 prior draws.
   * ``model_card.json``, listing those files and ``samples.png`` with their SHA-256, the
     test NLL and its protocol, and what was left out and why.
   * ``samples.png``: 16 samples made by ``python cli.py generate exported/mnist``.

   Left out: the SavedModels (TF Serving users export their own), the float32 TFLite
   decoders and the ONNX files (each about twice the float16 decoder).

It writes ``bench/results/pretrained_mnist.json``: the test figures (which
``tests/test_pretrained.py`` compares with the card), each shipped decoder's distance to the
float32 SavedModel on 256 prior draws, the files' sizes, the mean pixel of a fixed
16-image generation (the test regenerates it with the current code) and the wall time of
``generate`` in a fresh process (time to the first picture).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cli import ROOT, cli  # noqa: E402
from _evidence import write_result  # noqa: E402

SHIPPED = ("decoder_b1.tflite", "decoder_int8.tflite")
LIMIT_BYTES = 8_000_000
CHECK_DRAWS = 256  # prior draws for the distance of each shipped decoder to the SavedModel
CHECK_SEED = 0
GRID = 16


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/default"))
    parser.add_argument("--out", type=Path, default=Path("exported/mnist"))
    args = parser.parse_args(argv)
    run = args.run_dir if args.run_dir.is_absolute() else ROOT / args.run_dir
    out = args.out if args.out.is_absolute() else ROOT / args.out
    if not run.exists():
        cli("train", "--dataset", "mnist", "--run-dir", run)
    if not (run / "summary.json").is_file():
        sys.exit(f"error: {run} is not a finished run (no summary.json); finish it with: python cli.py train --resume {run}")
    sys.path.insert(0, str(ROOT))
    from tfvae.evaluate import matching_report

    if not matching_report(run, 1000, 10000, 0):
        cli("evaluate", run, "--iw-samples", 1000)
    config = json.loads((run / "config.json").read_text())
    if config["meta"].get("preset") or "--dataset mnist" not in config["meta"].get("command_line", ""):
        print(f"note: {run} was trained with: {config['meta'].get('command_line')}", flush=True)

    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.is_dir() else None) as tmp:
        tmp = Path(tmp)
        cli("export", run, "--out", tmp / "all", "--name", "mnist", "--tflite", "--quantize", "int8",
            "--int8-scales", "per-tensor", "--browser-weights", "float16")
        full = tmp / "all" / "mnist"
        card = json.loads((full / "tflite" / "1" / "model_card.json").read_text())
        distances = decoder_distances(full)
        staged = tmp / "mnist"
        lite = staged / "tflite" / "1"
        lite.mkdir(parents=True)
        for name in SHIPPED:
            shutil.copyfile(full / "tflite" / "1" / name, lite / name)
        left_out = sorted(f["path"] for f in card["files"] if Path(f["path"]).name not in SHIPPED)
        card["files"] = [f for f in card["files"] if f["path"] in {f"tflite/1/{n}" for n in SHIPPED}]
        card["source_run"] = str(Path(args.run_dir))
        card["shipped"] = {
            "made_by": "python bench/pretrained_mnist.py",
            "files": "decoder_b1.tflite (float16 weights): the browser demo's; decoder_int8.tflite (full-integer "
                     "int8, one scale per weight tensor, float32 in and out): devices, and generate's default (--variant auto); samples.png",
            "left_out": left_out,
            "why": f"at most {LIMIT_BYTES:,} bytes in git: the SavedModels, the float32 TFLite decoders and the "
                   "ONNX files are made by: python cli.py export RUN_DIR --tflite --onnx",
            "max_abs_difference_to_float32_savedmodel": distances,
        }
        write_card(lite, card)
        picture = lite / "samples.png"
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "generate", str(staged), "-n", str(GRID), "--seed", "0",
                        "--out", str(picture)], check=True, cwd=ROOT)
        first_picture_seconds = time.perf_counter() - start
        from tfvae.lite import sha256_file

        card["files"].append({"path": "tflite/1/samples.png", "bytes": picture.stat().st_size,
                              "sha256": sha256_file(picture)})
        write_card(lite, card)
        from tfvae.lite import generate

        images, _ = generate(staged, GRID, seed=0)
        total = sum(p.stat().st_size for p in staged.rglob("*") if p.is_file())
        if total > LIMIT_BYTES:
            sys.exit(f"error: the shipped files take {total:,} bytes, more than {LIMIT_BYTES:,}")
        old = tmp / "old"
        if out.exists():
            out.rename(old)
        staged.rename(out)
    print(f"written: {shown(out)} ({total:,} bytes)")
    evaluation = card["test_metrics"]
    write_result("pretrained_mnist", {
        "export": str(shown(out)),
        "run": str(Path(args.run_dir)),
        "train_command": config["meta"].get("command_line"),
        "test": {"protocol": {k: evaluation["protocol"][k] for k in ("split", "num_images", "iw_samples",
                                                                     "sampling_seed", "checkpoint", "units")},
                 "nll": evaluation["metrics"]["nll"], "nll_stderr": evaluation["metrics"]["nll_stderr"],
                 "neg_elbo": evaluation["metrics"]["neg_elbo"], "active_units": evaluation["metrics"]["active_units"]},
        "files": {f["path"]: f["bytes"] for f in card["files"]},
        "total_bytes": total,
        "max_abs_difference_to_float32_savedmodel": distances,
        "generation_check": {"n": GRID, "seed": 0, "variant": "auto", "mean_pixel": float(images.mean()),
                             "std_pixel": float(images.std())},
        "first_picture_seconds": first_picture_seconds,
        "first_picture_command": f"python cli.py generate {shown(out)} -n {GRID} --out grid.png",
    }, sources=[shown(out / "tflite" / "1" / "model_card.json")])


def shown(path: Path) -> str:
    """``path`` relative to the project when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_card(folder: Path, card: dict) -> None:
    (folder / "model_card.json").write_text(json.dumps(card, indent=2, allow_nan=False) + "\n")


def decoder_distances(export: Path) -> dict:
    """Max |images − SavedModel images| of each shipped TFLite decoder on CHECK_DRAWS prior draws."""
    import numpy as np
    import tensorflow as tf

    from tfvae.lite import decode, load_decoder

    card = json.loads((export / "tflite" / "1" / "model_card.json").read_text())
    z = np.random.default_rng(CHECK_SEED).standard_normal((CHECK_DRAWS, card["latent_dim"])).astype(np.float32)
    reference = tf.saved_model.load(str(export / "decoder" / "1")).signatures["serving_default"](
        z=tf.constant(z))["images"].numpy()
    out = {}
    for name in SHIPPED:
        images = decode(load_decoder(export / "tflite" / "1" / name), z)
        out[name] = {"max": float(np.abs(images - reference).max()), "mean": float(np.abs(images - reference).mean())}
    return out


if __name__ == "__main__":
    main()

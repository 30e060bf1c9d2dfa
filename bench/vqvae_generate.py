#!/usr/bin/env python
"""Latency of ``generate`` for one VQ-VAE image on one core, with LiteRT and with onnxruntime.

    python bench/vqvae_generate.py exported/NAME [--calls 20]

An export of a ``--model vqvae`` run made with ``export --tflite --onnx``. For each runtime,
on one thread: the model files are loaded once (as ``generate`` loads them), then each timed
call draws one code grid from the autoregressive prior (h·w prior calls in numpy,
:func:`tfvae.lite.sample_code_grids`, the loop ``generate`` runs) and decodes it; the figure
is the median of ``--calls`` calls after two warm-up calls, in milliseconds, with the median
of one prior call and of one decoder call. One core's float32 matmul peak (2048², one
thread, best of 5) is measured in the same run. Both runtimes draw the same codes for the
same seed; the script checks that they do. A benchmark, not a test.

Writes ``bench/results/vqvae_generate.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _evidence import ROOT, write_result  # noqa: E402
from export_bench import median_seconds  # noqa: E402

import numpy as np  # noqa: E402


def median_ms(fn, calls: int, warmup: int = 2) -> float:
    """The median of ``calls`` timed calls of ``fn`` after ``warmup`` calls, in milliseconds."""
    return median_seconds(fn, calls, warmup) * 1e3


def _relative(path):
    """``path`` relative to the project when it lies inside it (as a README command gives it)."""
    if path is None or not Path(path).is_absolute() or not Path(path).resolve().is_relative_to(ROOT):
        return path
    return os.path.relpath(Path(path).resolve(), ROOT)


def runtimes(export: Path):
    """{runtime: (prior_fn(codes) -> logits, decoder_fn(codes) -> images, files)}, one thread each."""
    from tfvae import lite
    from tfvae.onnx_runtime import onnx_dir, onnx_session, run_decoder

    folder = lite.tflite_dir(export)
    card = lite.verify_export(folder)
    prior = lite.load_decoder(folder / card["prior"]["file"], num_threads=1)
    decoder = lite.load_decoder(folder / "decoder.tflite", num_threads=1)
    out = {"litert": (lambda c: lite.decode(prior, c, "codes", "logits"), lambda c: lite.decode(decoder, c, "codes"),
                      [card["prior"]["file"], "decoder.tflite"])}
    onnx = onnx_dir(export)
    o_prior = onnx_session(onnx / card["prior"]["onnx_file"], input_name="codes", output_name="logits", threads=1)
    o_decoder = onnx_session(onnx / "decoder.onnx", card, threads=1)
    out["onnxruntime"] = (lambda c: run_decoder(o_prior, c, "logits", "codes"),
                          lambda c: run_decoder(o_decoder, c, name="codes"), [card["prior"]["onnx_file"],
                                                                              "decoder.onnx"])
    return card, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", type=Path, help="an export of a --model vqvae run, with --tflite --onnx")
    ap.add_argument("--calls", type=int, default=20, help="timed calls per figure (median)")
    args = ap.parse_args(argv)
    import tensorflow as tf

    from tfvae.lite import sample_code_grids

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from _evidence import matmul_peak_gflops

    peak = matmul_peak_gflops()
    card, models = runtimes(args.export.resolve())
    grid = card["prior"]["grid"]
    figures = {"export": os.path.relpath(args.export.resolve(), ROOT), "source_run": _relative(card.get("source_run")),
               "grid": grid,
               "codebook_size": card["prior"]["codebook_size"], "prior_calls_per_image": int(np.prod(grid)),
               "calls": args.calls, "threads": 1, "runtimes": {}}
    drawn = {}
    for name, (prior, decoder, files) in models.items():
        codes = sample_code_grids(prior, 1, grid, seed=0)
        drawn[name] = codes
        figures["runtimes"][name] = {
            "files": files,
            "image_ms": median_ms(lambda: decoder(sample_code_grids(prior, 1, grid, seed=0)), args.calls),
            "prior_call_ms": median_ms(lambda: prior(codes), args.calls * 10),
            "decoder_call_ms": median_ms(lambda: decoder(codes), args.calls * 10)}
        r = figures["runtimes"][name]
        print(f"{name}: one image in {r['image_ms']:.1f} ms ({r['prior_call_ms']:.2f} ms a prior call × "
              f"{figures['prior_calls_per_image']}, {r['decoder_call_ms']:.2f} ms the decoder)")
    figures["same_codes"] = bool(np.array_equal(drawn["litert"], drawn["onnxruntime"]))
    write_result("vqvae_generate", figures, peak_gflops=peak, peak_threads=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

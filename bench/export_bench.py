#!/usr/bin/env python
"""Benchmark the exported decoders: LiteRT (each TFLite variant) and onnxruntime against the SavedModel.

    python bench/export_bench.py exported/NAME [--calls 200] [--version V]

For each variant (and ``onnx/<v>/decoder.onnx`` with onnxruntime, when the export has it:
``export --onnx``): file size, single-sample latency on one thread (median of --calls
calls), batch-64 throughput; the same for the SavedModel's ``serving_default`` called from
TensorFlow (also on one thread) in the same run, and the ratios. It also prints the
decoder's FLOPs per sample (from the layer shapes) and the GFLOP/s each runtime achieves
against one core's float32 peak, measured here with a large matrix multiply on one
thread. A benchmark, not a test: nothing is asserted; the goals are printed beside the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def median_seconds(fn, calls: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def litert_runner(path: Path, batch: int, latent_dim: int):
    """A zero-argument callable running ``serving_default`` once on a fixed z [batch, D]."""
    from ai_edge_litert.interpreter import Interpreter

    from tfvae.quiet import native_output_silenced

    with native_output_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        runner = interpreter.get_signature_runner("serving_default")
        shape = runner.get_input_details()["z"]["shape_signature"]
        if shape[0] != -1 and shape[0] != batch:
            return None  # a fixed-batch model cannot run this batch
        z = np.random.default_rng(0).standard_normal((batch, latent_dim)).astype(np.float32)
        runner(z=z)  # resizes and allocates once
    return lambda: runner(z=z)


def shape_sweep(cfg, peak: float, calls: int) -> None:
    """Batch-1 LiteRT float32 latency and % of peak for decoders of other widths (random weights)."""
    import tempfile

    from tfvae.export import _decoder_archive, convert_tflite
    from tfvae.models import build_model
    from tfvae.networks import count_flops

    print()
    print("batch-1 LiteRT float32, other decoder shapes (random weights):")
    for hidden, filters in ([512], [32, 64]), ([256], [32, 64]), ([128], [32, 64]), ([64], [32, 64]), \
            ([256], [64, 64]), ([128], [64, 128]):
        model_cfg = type(cfg.model)(**{**cfg.model.__dict__, "hidden_units": hidden, "conv_filters": filters})
        model = build_model(model_cfg)
        with tempfile.TemporaryDirectory() as tmp:
            _decoder_archive(model).write_out(tmp + "/sm", verbose=False)
            (Path(tmp) / "d.tflite").write_bytes(convert_tflite(tmp + "/sm"))
            latency = median_seconds(litert_runner(Path(tmp) / "d.tflite", 1, model_cfg.latent_dim), calls)
        flops = count_flops(model.decoder)
        print(f"  dense {str(hidden):<6} filters {str(filters):<10} {flops / 1e6:5.2f} MFLOP  "
              f"{latency * 1e3:.3f} ms  {flops / latency / 1e9:6.1f} GFLOP/s  {100 * flops / latency / 1e9 / peak:4.1f}% of peak")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per figure (median)")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--result", default=None,
                        help="also write bench/results/RESULT.json (figures, command, commit, machine)")
    parser.add_argument("--shape-sweep", action="store_true",
                        help="also time batch-1 LiteRT float32 decoders of six other shapes (random weights)")
    args = parser.parse_args(argv)

    from tfvae.lite import tflite_dir
    from tfvae.quiet import native_output_silenced

    folder = tflite_dir(args.export_dir, args.version)
    card = json.loads((folder / "model_card.json").read_text())
    version = card["version"]
    d = card["latent_dim"]

    with native_output_silenced():
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.constant(0.0) + 1.0

    from tfvae.config import RunConfig
    from tfvae.networks import build_decoder, count_flops

    cfg = RunConfig.from_dict(card["config"]).resolved()
    flops = count_flops(build_decoder(cfg.model))

    # One core's float32 peak: a 2048² matrix multiply on one thread, best of 5.
    n = 2048
    a = tf.random.normal((n, n))
    matmul = tf.function(lambda: tf.matmul(a, a))
    matmul()
    peak = 2 * n**3 / min(median_seconds(lambda: matmul().numpy(), 1, warmup=0) for _ in range(5)) / 1e9

    saved = tf.saved_model.load(str(Path(args.export_dir) / "decoder" / str(version))).signatures["serving_default"]
    z1 = tf.constant(np.random.default_rng(0).standard_normal((1, d)).astype(np.float32))
    z64 = tf.constant(np.random.default_rng(0).standard_normal((64, d)).astype(np.float32))
    ref_latency = median_seconds(lambda: saved(z=z1)["images"].numpy(), args.calls)
    ref_batch = median_seconds(lambda: saved(z=z64)["images"].numpy(), max(20, args.calls // 10))

    print(f"export {args.export_dir} version {version}: latent {d}, decoder {flops / 1e6:.2f} MFLOP per sample")
    print(f"one-core float32 peak (2048² matmul, 1 thread): {peak:.1f} GFLOP/s")
    print()
    header = (f"{'runtime / variant':<26}{'size':>11}{'1-sample ms':>13}{'vs SM':>8}{'GFLOP/s':>9}{'% peak':>8}"
              f"{'batch-64 img/s':>16}{'vs SM':>8}")
    print(header)
    print("-" * len(header))
    ref_tput = 64 / ref_batch
    rows = [{"runtime": "SavedModel (TF)", "bytes": None, "latency_ms": ref_latency * 1e3, "gflops": flops / ref_latency / 1e9,
             "peak_fraction": flops / ref_latency / 1e9 / peak, "batch64_images_per_second": ref_tput}]
    print(f"{'SavedModel (TF)':<26}{'':>11}{ref_latency * 1e3:>13.3f}{1.0:>8.2f}{flops / ref_latency / 1e9:>9.2f}"
          f"{100 * flops / ref_latency / 1e9 / peak:>7.1f}%{ref_tput:>16.0f}{1.0:>8.2f}")
    size32 = None
    for name in ("decoder", "decoder_b1", "decoder_float16", "decoder_dynamic", "decoder_int8"):
        path = folder / f"{name}.tflite"
        if not path.is_file():
            continue
        size = path.stat().st_size
        size32 = size32 or size
        one = litert_runner(path, 1, d)
        latency = median_seconds(one, args.calls)
        many = litert_runner(path, 64, d)
        tput = None
        if many:
            tput = 64 / median_seconds(many, max(20, args.calls // 10))
            batch = f"{tput:>16.0f}{tput / ref_tput:>8.2f}"
        else:
            batch = f"{'n/a (batch 1)':>16}{'':>8}"
        gflops = flops / latency / 1e9
        rows.append({"runtime": f"LiteRT {name}", "bytes": size, "latency_ms": latency * 1e3, "gflops": gflops,
                     "peak_fraction": gflops / peak, "batch64_images_per_second": tput,
                     "size_fraction_of_float32": size / size32})
        print(f"{'LiteRT ' + name:<26}{size / 1e6:>9.2f}MB{latency * 1e3:>13.3f}{latency / ref_latency:>8.2f}"
              f"{gflops:>9.2f}{100 * gflops / peak:>7.1f}%{batch}"
              f"   size {size / size32:.0%} of float32")
    onnx_path = Path(args.export_dir) / "onnx" / str(version) / "decoder.onnx"
    if onnx_path.is_file():
        from tfvae.onnx_runtime import onnx_session, run_decoder

        session = onnx_session(onnx_path, card, threads=1)
        z1n, z64n = z1.numpy(), z64.numpy()
        latency = median_seconds(lambda: run_decoder(session, z1n), args.calls)
        tput = 64 / median_seconds(lambda: run_decoder(session, z64n), max(20, args.calls // 10))
        size, gflops = onnx_path.stat().st_size, flops / latency / 1e9
        rows.append({"runtime": "onnxruntime decoder.onnx", "bytes": size, "latency_ms": latency * 1e3,
                     "gflops": gflops, "peak_fraction": gflops / peak, "batch64_images_per_second": tput,
                     "size_fraction_of_float32": size / size32 if size32 else None})
        print(f"{'onnxruntime decoder.onnx':<26}{size / 1e6:>9.2f}MB{latency * 1e3:>13.3f}{latency / ref_latency:>8.2f}"
              f"{gflops:>9.2f}{100 * gflops / peak:>7.1f}%{tput:>16.0f}{tput / ref_tput:>8.2f}")
    if args.shape_sweep:
        shape_sweep(cfg, peak, args.calls)
    if args.result:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _evidence import write_result

        write_result(args.result, {"export": str(args.export_dir), "version": version, "latent_dim": d,
                                   "decoder_mflop_per_sample": flops / 1e6, "one_core_peak_gflops": peak,
                                   "threads": 1, "calls": args.calls, "rows": rows}, peak_gflops=peak, peak_threads=1)
    print()
    print("Goals: LiteRT float32 1-sample latency <= SavedModel's (ratio 'vs SM' <= 1) and >= 50% of the "
          "one-core peak; float16 file <= 55% and int8 file <= 30% of the float32 one.")


if __name__ == "__main__":
    main()

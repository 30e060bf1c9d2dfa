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
sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402
from _evidence import one_line_errors, result_name  # noqa: E402


def median_seconds(fn, calls: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def litert_runner(path: Path, batch: int, latent_dim: int, threads: int = 1, xnnpack: bool = True):
    """A zero-argument callable running ``serving_default`` once on a fixed z [batch, D]
    through LiteRT's ``Interpreter`` with ``threads`` threads, with the XNNPACK delegate
    (LiteRT's default on CPU) or with the builtin kernels only; None when the model's
    batch is fixed to another size."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tfvae.quiet import native_output_silenced

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with native_output_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
        runner = interpreter.get_signature_runner("serving_default")
        shape = runner.get_input_details()["z"]["shape_signature"]
        if shape[0] != -1 and shape[0] != batch:
            return None  # a fixed-batch model cannot run this batch
        z = np.random.default_rng(0).standard_normal((batch, latent_dim)).astype(np.float32)
        runner(z=z)  # resizes and allocates once
    return lambda: runner(z=z)


def litert_compiled_runner(path: Path, latent_dim: int):
    """Batch-1 ``serving_default`` through LiteRT's newer ``CompiledModel`` API (CPU, its
    default options), input and output buffers made once."""
    from ai_edge_litert.compiled_model import CompiledModel

    from tfvae.quiet import native_output_silenced

    with native_output_silenced():
        model = CompiledModel.from_file(str(path))
        index = model.get_signature_index("serving_default")
        inputs, outputs = model.create_input_buffers(index), model.create_output_buffers(index)
        z = np.random.default_rng(0).standard_normal((1, latent_dim)).astype(np.float32)
        inputs[0].write(z)

        def run():
            inputs[0].write(z)
            model.run_by_index(index, inputs, outputs)
        run()
    return run


def read_bandwidth(nbytes: int, repeats: int = 50) -> float:
    """One thread's read bandwidth (bytes/s) over an array of ``nbytes``: numpy's maximum
    of a float32 array that size (a SIMD loop that only reads), best of ``repeats`` (warm
    caches: the same data each time, as the decoder's weights are re-read on every call)."""
    a = np.ones(max(1, nbytes // 4), np.float32)
    a.max()
    best = min(median_seconds(a.max, 1, warmup=0) for _ in range(repeats))
    return a.nbytes / best


def litert_analysis(folder: Path, cfg, flops: int, peak: float, calls: int) -> dict:
    """Why batch-1 float32 LiteRT decoding stays far from the one-core peak, measured.

    1. Each layer of the decoder converted alone (same shapes, random weights) and timed at
       batch 1 in LiteRT: time, FLOPs and weight bytes per layer.
    2. The memory roofline: a batch-1 dense layer reads each weight once for one multiply-add
       (2 FLOPs per 4 bytes), so its rate is bounded by the read bandwidth, measured here
       on an array as large as the decoder's weights: bound = FLOPs / (bytes / bandwidth).
    3. The same float32 decoder with XNNPACK on and off, 1 and 2 threads, and through the
       ``CompiledModel`` API; the fastest is what ``generate`` should use.
    """
    import tempfile

    import keras
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from tfvae.networks import build_decoder, count_flops
    from tfvae.quiet import native_output_silenced

    path = folder / "decoder.tflite"
    d = cfg.model.latent_dim
    out = {"layers": [], "configurations": []}
    print()
    print("LiteRT float32 decoder at batch 1, layer by layer (each layer converted alone; random weights):")
    decoder = build_decoder(cfg.model)
    total_bytes = 0
    with tempfile.TemporaryDirectory() as tmp:
        for layer in decoder.layers:
            if not layer.weights:
                continue
            shape = [1] + list(layer.input.shape[1:])
            fn = tf.function(lambda x, layer=layer: layer(x), input_signature=[tf.TensorSpec(shape, tf.float32)])
            with native_output_silenced():
                # Weights frozen into the flatbuffer, as in the exported decoder (converted with
                # its variables as inputs instead, a layer ran ~5x slower: no pre-packed weights).
                frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
                converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
                (Path(tmp) / "layer.tflite").write_bytes(converter.convert())
                from ai_edge_litert.interpreter import Interpreter

                interp = Interpreter(model_path=str(Path(tmp) / "layer.tflite"), num_threads=1)
                interp.allocate_tensors()
                x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
                index = interp.get_input_details()[0]["index"]

                def run(interp=interp, index=index, x=x):
                    interp.set_tensor(index, x)
                    interp.invoke()
            seconds = median_seconds(run, calls)
            layer_flops = count_flops(keras.Sequential([keras.Input(shape[1:]), layer]))
            nbytes = sum(int(np.prod(w.shape)) * 4 for w in layer.weights)
            total_bytes += nbytes
            out["layers"].append({"layer": layer.name, "kind": type(layer).__name__, "ms": seconds * 1e3,
                                  "mflop": layer_flops / 1e6, "weight_bytes": nbytes,
                                  "gflops": layer_flops / seconds / 1e9})
            print(f"  {layer.name:<10} {type(layer).__name__:<16} {seconds * 1e3:7.3f} ms  {layer_flops / 1e6:5.2f} MFLOP"
                  f"  {nbytes / 1e6:5.2f} MB weights  {layer_flops / seconds / 1e9:6.1f} GFLOP/s")
    bandwidth = read_bandwidth(total_bytes)
    bound = flops / (total_bytes / bandwidth) / 1e9
    out.update({"weight_bytes": total_bytes, "read_bandwidth_gb_s": bandwidth / 1e9, "roofline_gflops": bound,
                "roofline_peak_fraction": bound / peak})
    print(f"memory roofline: {total_bytes / 1e6:.2f} MB of float32 weights read once per image at "
          f"{bandwidth / 1e9:.1f} GB/s (one thread, measured) bounds batch-1 decoding at {bound:.1f} GFLOP/s = "
          f"{100 * bound / peak:.0f}% of the one-core peak")
    out["layers_ms_sum"] = sum(r["ms"] for r in out["layers"])
    print(f"the layers alone add up to {out['layers_ms_sum']:.3f} ms")
    print()
    print("LiteRT float32 decoder at batch 1, by runtime configuration:")
    configs = [("Interpreter, XNNPACK, 1 thread", lambda: litert_runner(path, 1, d, 1, True)),
               ("Interpreter, XNNPACK, 2 threads", lambda: litert_runner(path, 1, d, 2, True)),
               ("Interpreter, builtin kernels, 1 thread", lambda: litert_runner(path, 1, d, 1, False)),
               ("Interpreter, builtin kernels, 2 threads", lambda: litert_runner(path, 1, d, 2, False)),
               ("CompiledModel (CPU)", lambda: litert_compiled_runner(path, d))]
    for name, make in configs:
        try:
            seconds = median_seconds(make(), calls)
        except Exception as exc:  # an API this LiteRT build lacks is reported, not fatal
            print(f"  {name:<42} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            out["configurations"].append({"configuration": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        gflops = flops / seconds / 1e9
        out["configurations"].append({"configuration": name, "ms": seconds * 1e3, "gflops": gflops,
                                      "peak_fraction": gflops / peak})
        print(f"  {name:<42} {seconds * 1e3:7.3f} ms  {gflops:6.1f} GFLOP/s  {100 * gflops / peak:4.1f}% of peak")
    timed = [c for c in out["configurations"] if "ms" in c]
    out["fastest"] = min(timed, key=lambda c: c["ms"])["configuration"]
    print(f"fastest: {out['fastest']}")
    return out


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
    one_line_errors(parser)
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per figure (median)")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--result", type=result_name, default=None,
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
    analysis = litert_analysis(folder, cfg, flops, peak, args.calls) \
        if (folder / "decoder.tflite").is_file() else None
    litert32 = next((r for r in rows if r["runtime"] == "LiteRT decoder"), None)
    if args.shape_sweep:
        shape_sweep(cfg, peak, args.calls)
    if args.result:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _evidence import write_result

        write_result(args.result, {"export": str(args.export_dir), "version": version, "latent_dim": d,
                                   "decoder_mflop_per_sample": flops / 1e6, "one_core_peak_gflops": peak,
                                   "threads": 1, "calls": args.calls, "rows": rows, "litert_analysis": analysis,
                                   "litert_peak_fraction": litert32 and litert32["peak_fraction"]},
                     peak_gflops=peak, peak_threads=1)
    print()
    print("Goals: LiteRT float32 1-sample latency <= SavedModel's (ratio 'vs SM' <= 1) and >= 50% of the "
          "one-core peak; float16 file <= 55% and int8 file <= 30% of the float32 one.")


if __name__ == "__main__":
    main()

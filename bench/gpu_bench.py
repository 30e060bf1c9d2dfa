#!/usr/bin/env python
"""Training on a GPU: images/s and GPU utilisation, and the loss checked against the CPU's
(a benchmark for a machine with a GPU; tests never need one).

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/gpu_bench.py [--steps 300]

For the default model and ``--preset mnist-best`` (VampPrior, IWAE K = 5), each in float32
and ``mixed_float16``, without and with XLA (``--jit``): ``--steps`` training steps of
tfvae's own train step and pipeline (batch 128, real MNIST training images, all steps of
a window in one ``tf.function`` call), timed over the last ``--windows`` windows after a
warm-up window, each configuration in its own subprocess. While the timed windows run, a
thread samples ``nvidia-smi --query-gpu=utilization.gpu,memory.used`` every 0.2 s; the
mean utilisation (%) and the peak memory (MiB) are reported.

Parity: for each model in float32, the same weights and one fixed batch with fixed noise
ε give the loss (``VAE.losses_for``, nats per image) on ``/CPU:0`` and on ``/GPU:0``; the
relative difference must be at most 1e-4, else the script exits with status 1.

Without a GPU, or without TensorFlow, the script says so in one line and exits with status
2. The result goes to ``bench/results/gpu_bench.json`` (with the machine, versions and
commit).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402
from _evidence import one_line_errors, result_name  # noqa: E402
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODELS = {"default": None, "mnist-best": "mnist-best"}
PARITY_RTOL = 1e-4


def model_config(name: str):
    """The resolved RunConfig of the default recipe or of a preset, for 28×28×1 images."""
    from tfvae.config import RunConfig, load_preset

    cfg = RunConfig.from_dict(load_preset(MODELS[name])) if MODELS[name] else RunConfig()
    cfg.model.image_shape = [28, 28, 1]
    return cfg.resolved()


def build(cfg, precision="float32"):
    from tfvae.models import build_model

    t = cfg.train
    return build_model(cfg.model, seed=0, objective=t.objective, iw_samples=t.train_iw_samples,
                       precision=precision)


class GpuSampler(threading.Thread):
    """Samples ``nvidia-smi`` every ``interval`` seconds until :meth:`stop`."""

    def __init__(self, interval=0.2):
        super().__init__(daemon=True)
        self.interval, self.samples, self._halt = interval, [], threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True)
            except OSError:  # no nvidia-smi: utilisation is reported as unknown
                return
            if out.returncode == 0 and out.stdout.strip():
                util, mem = out.stdout.strip().splitlines()[0].split(",")
                self.samples.append((float(util), float(mem)))
            self._halt.wait(self.interval)

    def stop(self) -> dict:
        self._halt.set()
        self.join()
        if not self.samples:
            return {"gpu_utilisation_percent": None, "gpu_memory_mib": None}
        return {"gpu_utilisation_percent": statistics.mean(u for u, _ in self.samples),
                "gpu_memory_mib": max(m for _, m in self.samples)}


def throughput(spec: dict) -> dict:
    """images/s of one configuration (median over timed windows) and the GPU's use."""
    import keras

    from tfvae.data import train_pipeline
    from train_bench import mnist_train

    cfg = model_config(spec["model"])
    model = build(cfg, spec["precision"])
    opt = keras.optimizers.Adam(1e-3)
    if spec["precision"] == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    steps, batch = spec["steps"], 128
    model.compile(optimizer=opt, jit_compile=spec["jit"], steps_per_execution=steps)
    data = train_pipeline(mnist_train(), batch, cfg.data.binarization, 0,
                          noise_shape=(cfg.train.train_iw_samples if cfg.train.objective == "iwae" else 1,
                                       cfg.model.latent_dim))
    times = []
    sampler = GpuSampler()

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                sampler.start()
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    history = model.fit(data, epochs=spec["windows"] + 1, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])
    gpu = sampler.stop()
    return {"images_per_second": statistics.median(steps * batch / t for t in times[1:]),
            "final_loss": float(history.history["loss"][-1]), **gpu}


def parity(name: str) -> dict:
    """The float32 loss on one fixed batch on the CPU and on the GPU, same weights and ε."""
    import numpy as np
    import tensorflow as tf

    from train_bench import mnist_train

    cfg = model_config(name)
    samples = cfg.train.train_iw_samples if cfg.train.objective == "iwae" else 1
    rng = np.random.default_rng(0)
    x = (rng.random((128, 28, 28, 1)) < mnist_train()[:128] / 255.0).astype(np.float32)
    eps = rng.standard_normal((128, samples, cfg.model.latent_dim)).astype(np.float32)
    losses = {}
    weights = None
    for device in ("/CPU:0", "/GPU:0"):
        with tf.device(device):
            model = build(cfg)
            if weights is None:
                weights = model.get_weights()
            model.set_weights(weights)
            losses[device] = float(model.losses_for(tf.constant(x), eps=tf.constant(eps), weight=1.0)["loss"])
    cpu, gpu = losses["/CPU:0"], losses["/GPU:0"]
    return {"cpu_loss": cpu, "gpu_loss": gpu, "relative_difference": abs(gpu - cpu) / abs(cpu)}


def run_worker(spec: dict) -> dict:
    from train_bench import run_worker as run_script

    return run_script(spec, __file__)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(parser)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=100, help="training steps per timed window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows after the warm-up one")
    parser.add_argument("--result", type=result_name, default="gpu_bench", help="write bench/results/RESULT.json; '' to skip")
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(parity(spec["model"]) if spec.get("parity") else throughput(spec)))
        return 0
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        print(f"gpu_bench: TensorFlow is not installed for {sys.executable}; "
              "install requirements.txt (TensorFlow built with CUDA) first", file=sys.stderr)
        return 2
    from tfvae.quiet import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("gpu_bench: TensorFlow sees no GPU on this machine; run it where one is", file=sys.stderr)
        return 2
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    print(f"GPU: {', '.join(names)}")
    results, failed = {"gpus": names, "rows": [], "parity": {}}, False
    print(f"== training throughput (batch 128; median of {args.windows} windows of {args.steps} steps) ==")
    for model in MODELS:
        for precision in ("float32", "mixed_float16"):
            for jit in (False, True):
                r = run_worker({"model": model, "precision": precision, "jit": jit, "steps": args.steps,
                                "windows": args.windows})
                r.update(model=model, precision=precision, jit=jit)
                results["rows"].append(r)
                util = r["gpu_utilisation_percent"]
                print(f"{model:<11} {precision:<14} {'XLA' if jit else 'no XLA':<7} "
                      f"{r['images_per_second']:>10,.0f} images/s   GPU busy "
                      f"{'?' if util is None else f'{util:.0f}%'}   memory {r['gpu_memory_mib'] or 0:,.0f} MiB")
    print(f"\n== float32 loss on one fixed batch, CPU against GPU (relative difference at most {PARITY_RTOL:g}) ==")
    for model in MODELS:
        p = run_worker({"model": model, "parity": True})
        results["parity"][model] = p
        ok = p["relative_difference"] <= PARITY_RTOL
        failed |= not ok
        print(f"{model:<11} CPU {p['cpu_loss']:.6f}  GPU {p['gpu_loss']:.6f}  relative difference "
              f"{p['relative_difference']:.2e}  {'ok' if ok else 'TOO LARGE'}")
    if args.result:
        from _evidence import write_result

        write_result(args.result, results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Two local workers against one: training throughput of ``--strategy multiworker`` and
the all-reduce time that explains it.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/multiworker_bench.py [--images 12800] [--epochs 3]

Runs ``python cli.py train --strategy multiworker`` (default model, global batch 128) as
one worker, then as two worker processes on 127.0.0.1, and reads the chief's
``metrics.csv`` (training images/s of each epoch after the first, which includes
tracing). Then two processes time an all-reduce of the model's gradient size (float32,
the sum every step performs), and the report says what share of a two-worker step it
takes. On one 2-core machine the two workers also share the cores, so expect below 1×:
the all-reduce adds work, and each worker's half batch runs on fewer threads.

Writes ``bench/results/multiworker_bench.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _cli import ROOT  # noqa: E402


def launch(n: int, argv: list, timeout: float = 3600) -> list:
    """Run ``argv`` as workers 0 ... n-1 of a cluster on 127.0.0.1; return their stdouts."""
    from tfvae.training.multiworker import local_tf_configs

    procs = [subprocess.Popen([sys.executable, *map(str, argv)], env={**os.environ, "TF_CONFIG": tf_config}, cwd=ROOT,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
             for tf_config in local_tf_configs(n)]
    print(f"$ ({n} workers) {' '.join(map(str, argv))}", flush=True)
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    codes = [p.returncode for p in procs]
    if any(codes):
        raise SystemExit(f"workers exited with {codes}")
    return outs


def allreduce_child(size: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfvae.training.multiworker import multiworker_strategy, seconds_per_step_allreduce

    strategy = multiworker_strategy()
    print(json.dumps({"seconds": seconds_per_step_allreduce(strategy, size)}))


def epoch_rates(run_dir: Path) -> list:
    with open(run_dir / "metrics.csv") as fh:
        return [float(r["train_images_per_second"]) for r in csv.DictReader(fh)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="runs/multiworker-bench")
    ap.add_argument("--images", type=int, default=12800)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--allreduce-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.allreduce_child:
        allreduce_child(args.allreduce_child)
        return 0
    from _evidence import write_result

    work = (ROOT / args.work / time.strftime("%Y%m%d-%H%M%S")).resolve()
    train = [ROOT / "cli.py", "train", "--dataset", "mnist", "--max-train-examples", args.images,
             "--validation-size", 1000, "--epochs", args.epochs, "--strategy", "multiworker"]
    figures = {"images": args.images, "epochs": args.epochs, "batch": 128, "workers": {}}
    for n in (1, 2):
        launch(n, [*train, "--run-dir", work / f"workers{n}"])
        rates = epoch_rates(work / f"workers{n}")
        steady = statistics.median(rates[1:] or rates)
        figures["workers"][str(n)] = {"train_images_per_second_per_epoch": rates,
                                      "train_images_per_second": steady}
    config = json.loads((work / "workers1" / "config.json").read_text())
    from tfvae.models import build_model
    from tfvae.config import RunConfig

    model = build_model(RunConfig.from_dict(config).model)
    params = int(sum(int(v.numpy().size) for v in model.trainable_variables))
    out = launch(2, [__file__, "--allreduce-child", params])
    seconds = json.loads(out[0].strip().splitlines()[-1])["seconds"]
    one, two = figures["workers"]["1"]["train_images_per_second"], figures["workers"]["2"]["train_images_per_second"]
    step_two = 128 / two
    figures.update({
        "speedup_two_over_one": two / one,
        "gradient_floats": params,
        "allreduce_seconds_per_step": seconds,
        "two_worker_step_seconds": step_two,
        "allreduce_share_of_two_worker_step": seconds / step_two,
        "one_worker_step_seconds": 128 / one,
        "cores": os.cpu_count(),
    })
    write_result("multiworker_bench", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

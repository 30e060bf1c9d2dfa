#!/usr/bin/env python
"""Time to quality: minutes until ``python cli.py train --dataset mnist`` gives a model whose
test NLL is at most 86.5 nats, for today's default recipe and the previous one, in one run.

    TFDS_DATA_DIR=../shared/tensorflow_datasets python bench/time_to_quality.py [--work DIR]

Recipes: ``new`` is the command as it is today (the hierarchical VAE and its family's
recipe, :func:`tfvae.models.registry.recipe_for`); ``previous`` is the default before issue
28, which today is ``python cli.py train --dataset mnist --model vae`` (the one-layer VAE,
100 epochs at a constant learning rate).

Protocol:

1. The new recipe trains first, on real MNIST in its own subprocess through
   ``tfvae.training.train`` with everything ``cli.py train`` does (validation each epoch,
   checkpoints, figures, TensorBoard, one line per epoch). A callback saves the weights
   after every ``--every``-th epoch and after the last; its saving time is subtracted, so
   each snapshot's time is the wall time since the training process started (imports,
   data loading and compilation included) that the plain command would have taken. It
   stops after epoch ``--new-stop-epoch`` (default 40 of its 100; a snapshot there): up to
   that epoch its trajectory is the plain command's, and the time to the target is all
   this bench needs of it.
2. Each snapshot is a model a user could have stopped at. Its test NLL is ``evaluate``'s
   (K = 1,000 importance samples, all 10,000 test images, the run's fixed binarization,
   sampling seed 0), written to an ``eval.json`` beside it. The first snapshot at or under
   the target is located by bisection with a cheaper K = 100 screen, then confirmed with
   K = 1,000 (see :func:`first_at_target`); every evaluated point is recorded.
3. The previous recipe then trains, with the same snapshots, until all its epochs are done
   or until its wall time passes ``--previous-limit`` times the new recipe's time to the
   target (default 2: the goal's ratio of 0.5), whichever comes first; a stop is recorded
   with its epoch, and is an early end of the same trajectory the plain command follows.
   Its snapshots are searched the same way.
4. Minutes to quality = that snapshot's time; the new recipe's is an upper bound (the
   snapshot before the one found is not evaluated with K = 1,000, the bench's costliest
   step for the hierarchical VAE). ``time_to_quality_ratio``
   = new / previous (goal ≤ 0.5), an upper bound for the same reason. When the previous recipe has not reached the target at its last snapshot,
   its time to quality is longer than that snapshot's time, and the result records
   ``time_to_quality_ratio_below`` = new / that time, an upper bound of the ratio.

Both recipes run on the same machine in the same run, which should have nothing else to
do while they train (the load average before and after each training is recorded; the
evaluations between and after the trainings are not timed); the machine's matmul peak, CPU
and versions go to ``bench/results/time_to_quality.json`` with every evaluated snapshot.
``--work`` keeps the runs (several hundred MB) and lets an interrupted bench continue:
finished trainings and evaluations are reused.
"""

from __future__ import annotations

import time

START = time.perf_counter()  # the training worker's clock starts before TensorFlow is imported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # noqa: E402
from _evidence import one_line_errors, result_name  # noqa: E402
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


TARGET_NATS = 86.5
FULL_K, SCREEN_K = 1000, 100
MAX_TEST_IMAGES = None  # all 10,000 (--smoke: a few)
# The default before issue 28: the one-layer VAE with TrainConfig's defaults (100 epochs, constant
# learning rate), which today's command gives with --model vae.
PREVIOUS_DEFAULT = {"model": "vae"}
RECIPES = {"new": {}, "previous": PREVIOUS_DEFAULT}
PREVIOUS_LIMIT = 2.0  # the previous recipe stops past this many times the new one's time to the target
NEW_STOP_EPOCH = 40  # the new recipe stops after this epoch (0: all its epochs)
SHIFT_IMAGES = 1000  # test images on which the new recipe's screen excess over the full K is measured


SMOKE = {"max_train_examples": 2000, "epochs": 3, "test_images": 300, "full_k": 20, "screen_k": 5}


def recipe_config(name: str, smoke: bool = False):
    """RunConfig of ``python cli.py train --dataset mnist`` (``new``: today's defaults, the
    default family's recipe included) or of that command with the options of
    :data:`RECIPES` ``[name]`` (``previous``: ``--model vae``); ``smoke``: 2,000 training
    images and 3 epochs (a check of this script, not a measurement)."""
    from tfvae.config import RunConfig
    from tfvae.models import registry

    cfg = RunConfig()
    cfg.data.dataset = "mnist"
    given = dict(RECIPES[name])
    cfg.model.model = given.pop("model", cfg.model.model)
    for key, value in {**registry.recipe_for(cfg.model.model), **given}.items():
        setattr(cfg.train, key, value)
    if smoke:
        cfg.data.max_train_examples, cfg.train.epochs = SMOKE["max_train_examples"], SMOKE["epochs"]
    return cfg


def options(name: str) -> str:
    """The CLI options that give this recipe (for the record)."""
    flags = []
    for key, value in RECIPES[name].items():
        opt = "--" + key.replace("_", "-")
        flags.append(("--jit" if value else "--no-jit") if isinstance(value, bool) else f"{opt} {value}")
    return " ".join(["python cli.py train --dataset mnist"] + flags)


def train_worker(name: str, run_dir: Path, every: int, limit_seconds: float, stop_epoch: int = 0,
                 smoke: bool = False) -> None:
    """Train recipe ``name`` into ``run_dir``, saving snapshots and their times; stop after
    the first epoch that ends past ``limit_seconds`` or after epoch ``stop_epoch`` (0: no
    limit), with a snapshot."""
    import keras

    from tfvae.training import train
    from tfvae.training.setup import Interrupted

    cfg = recipe_config(name, smoke)
    snaps = run_dir.parent / f"{run_dir.name}-snapshots"
    snaps.mkdir(parents=True, exist_ok=True)
    record = []

    class Snapshots(keras.callbacks.Callback):
        saving = 0.0
        stopped = None

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            past = (bool(limit_seconds) and now - START - self.saving >= limit_seconds) or \
                (bool(stop_epoch) and epoch + 1 >= stop_epoch)
            if (epoch + 1) % every and epoch + 1 != cfg.train.epochs and not past:
                return
            self.model.save_weights(str(snaps / f"epoch{epoch + 1:03d}.weights.h5"))
            record.append({"epoch": epoch + 1, "seconds": now - START - self.saving})
            self.saving += time.perf_counter() - now
            (snaps / "times.json").write_text(json.dumps(record))
            if past and epoch + 1 != cfg.train.epochs:
                self.stopped = epoch + 1
                self.model.stop_training = True

    watcher = Snapshots()
    try:
        summary = train(cfg, run_dir, command_line=options(name), callbacks=[watcher])
    except Interrupted:  # a stop reads as an interruption where the loop counts the epochs it missed
        if watcher.stopped is None:
            raise
        summary = {}
    if watcher.stopped is not None:
        summary.update(stopped_after_epoch=watcher.stopped, of_epochs=cfg.train.epochs, limit_seconds=limit_seconds,
                       stop_epoch=stop_epoch)
    (snaps / "summary.json").write_text(json.dumps({"train_summary": summary, "snapshots": record}, default=str))


def evaluate_snapshot(run_dir: Path, epoch: int, k: int, images=None) -> dict:
    """``evaluate`` with K = ``k`` on the full test set (or its first ``images``) of one
    snapshot, through a folder holding the run's config.json and the snapshot as its
    ``best`` checkpoint."""
    images = MAX_TEST_IMAGES if images is None else images
    folder = run_dir.parent / f"{run_dir.name}-eval" / (f"epoch{epoch:03d}-k{k}" + (f"-n{images}" if images else ""))
    done = folder / "eval.json"
    if done.exists():
        return json.loads(done.read_text())
    from tfvae.evaluate import evaluate_run

    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "config.json", folder / "config.json")
    shutil.copy(run_dir.parent / f"{run_dir.name}-snapshots" / f"epoch{epoch:03d}.weights.h5",
                folder / "checkpoints" / "best.weights.h5")
    return evaluate_run(folder, iw_samples=k, progress=False, max_examples=images)


def first_at_target(run_dir: Path, times: list, say, last_first: bool, exact: bool = True) -> tuple:
    """The first snapshot whose test NLL (K = 1,000) is at most the target: (its index or
    None, every evaluated point).

    With ``last_first`` (a recipe that may have stopped short of the target), the last
    snapshot is evaluated first with the full protocol: above the target, no snapshot
    reached it (the NLL falls as training goes on) and the search ends there. Then a
    bisection over the cheaper K = 100 screen (all test images) finds the first snapshot
    whose screen, less the screen's excess over K = 1,000 on the last snapshot (K = 100
    overestimates the NLL, Burda et al. 2015, theorem 1; measured on all test images with
    ``last_first``, else on the first :data:`SHIFT_IMAGES`), is at most the target. That only
    guides the search: the full protocol then confirms the snapshot found, moving later
    while it is above the target, and (``exact``) the one before it, moving earlier while
    that one is at or under the target, so the answer is the full protocol's. Without
    ``exact`` the snapshot found is at or under the target but the one before it is not
    evaluated: its time is an upper bound of the time to the target (the new recipe's,
    whose K = 1,000 evaluations cost most: an upper bound of its time is all the goal needs).
    """
    points = []

    def nll(i, k, images=None):
        report = evaluate_snapshot(run_dir, times[i]["epoch"], k, images)
        m = report["metrics"]
        n = report["protocol"]["num_images"]
        if not any(p["epoch"] == times[i]["epoch"] and p["iw_samples"] == k and p["num_images"] == n for p in points):
            points.append({**times[i], "iw_samples": k, "num_images": n, "nll": m["nll"],
                           "nll_stderr": m["nll_stderr"], "neg_elbo": m["neg_elbo"],
                           "evaluate_seconds": report["seconds"]})
            say(f"  epoch {times[i]['epoch']:>3} ({times[i]['seconds'] / 60:5.1f} min): test NLL "
                f"{m['nll']:.2f} ± {m['nll_stderr']:.2f} nats (K = {k}, {n:,} images)")
        return m["nll"]

    def done(index):
        return index, sorted(points, key=lambda p: (p["epoch"], p["iw_samples"], p["num_images"]))

    last = len(times) - 1
    if last_first:
        if nll(last, FULL_K) > TARGET_NATS:
            return done(None)
        shift = nll(last, SCREEN_K) - nll(last, FULL_K)
    else:
        few = min(SHIFT_IMAGES, MAX_TEST_IMAGES or SHIFT_IMAGES)
        shift = nll(last, SCREEN_K, few) - nll(last, FULL_K, few)
    lo, hi = -1, last  # every index <= lo screens above the target; hi screens at or under it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if nll(mid, SCREEN_K) - shift <= TARGET_NATS else (mid, hi)
    while nll(hi, FULL_K) > TARGET_NATS:  # the guide was early: move later
        hi += 1
        if hi > last:
            return done(None)
    while exact and hi > 0 and nll(hi - 1, FULL_K) <= TARGET_NATS:  # the guide was late: move earlier
        hi -= 1
    return done(hi)


def main() -> int:
    global FULL_K, SCREEN_K, MAX_TEST_IMAGES, TARGET_NATS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    one_line_errors(parser)
    parser.add_argument("--worker", nargs=5, metavar=("RECIPE", "RUN_DIR", "EVERY", "LIMIT", "STOP_EPOCH"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true",
                        help="check this script in minutes: 2,000 training images, 3 epochs, 300 test images, "
                             "K = 20 and 5; its figures mean nothing and no result is written")
    parser.add_argument("--work", default="bench/work/time_to_quality",
                        help="folder of the runs, snapshots and evaluations (kept; reused when run again)")
    parser.add_argument("--target", type=float, default=TARGET_NATS, help="test NLL to reach, nats per image")
    parser.add_argument("--every", type=int, default=5, help="snapshot every N epochs (and the last)")
    parser.add_argument("--previous-limit", type=float, default=PREVIOUS_LIMIT,
                        help="stop the previous recipe's training past this many times the new one's time to the "
                             "target (0: train all its epochs)")
    parser.add_argument("--new-stop-epoch", type=int, default=NEW_STOP_EPOCH,
                        help="stop the new recipe's training after this epoch (0: all its epochs); its trajectory "
                             "up to there is the plain command's")
    parser.add_argument("--result", type=result_name, default="time_to_quality", help="bench/results/RESULT.json; '' to skip")
    args = parser.parse_args()
    from tfvae.quiet import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # evaluating many snapshots retraces; the notices say nothing new
    if args.worker:
        train_worker(args.worker[0], Path(args.worker[1]), int(args.worker[2]), float(args.worker[3]),
                     int(args.worker[4]), args.smoke)
        return 0
    TARGET_NATS = args.target
    if args.smoke:
        FULL_K, SCREEN_K, MAX_TEST_IMAGES = SMOKE["full_k"], SMOKE["screen_k"], SMOKE["test_images"]
        args.every, args.result, args.work = 1, "", args.work + "-smoke"
        args.new_stop_epoch = min(args.new_stop_epoch, 2) if args.new_stop_epoch else 0  # the stop is exercised
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    say = lambda text: print(text, flush=True)  # noqa: E731
    figures = {"target_nats": TARGET_NATS, "recipes": {}}
    for name in ("new", "previous"):
        run_dir = work / name
        summary_file = work / f"{name}-snapshots" / "summary.json"
        limit, stop_epoch = 0.0, args.new_stop_epoch if name == "new" else 0
        if name == "previous" and figures["recipes"]["new"].get("reached") and args.previous_limit:
            limit = args.previous_limit * figures["recipes"]["new"]["minutes_to_target"] * 60
        if not summary_file.exists():
            if run_dir.exists():
                shutil.rmtree(run_dir)  # an unfinished training is started again (its times would be wrong)
            shutil.rmtree(work / f"{name}-snapshots", ignore_errors=True)
            say(f"training the {name} recipe: {options(name)}"
                + (f" (stopped past {limit / 60:.1f} minutes)" if limit else "")
                + (f" (stopped after epoch {stop_epoch})" if stop_epoch else ""))
            load_before = os.getloadavg()
            out = subprocess.run([sys.executable, __file__, "--worker", name, str(run_dir), str(args.every),
                                  str(limit), str(stop_epoch)] + (["--smoke"] if args.smoke else []),
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
            if out.returncode != 0:
                say(f"time_to_quality: training the {name} recipe failed (exit {out.returncode})")
                return 1
            record = json.loads(summary_file.read_text())
            record["load_average_before_after"] = [load_before[0], os.getloadavg()[0]]
            summary_file.write_text(json.dumps(record))
        rec = figures["recipes"][name] = {
            "command": options(name), **json.loads(summary_file.read_text()),
            "train_config": json.loads((run_dir / "config.json").read_text())["train"],
            "model": json.loads((run_dir / "config.json").read_text())["model"]["model"]}
        say(f"{name} recipe ({rec['command']}):")
        exact = name == "previous"
        index, points = first_at_target(run_dir, rec["snapshots"], say, last_first=name == "previous", exact=exact)
        rec["time_is_upper_bound"] = not exact
        rec["evaluated"] = points
        rec["reached"] = index is not None
        if index is not None:
            rec["epochs_to_target"] = rec["snapshots"][index]["epoch"]
            rec["minutes_to_target"] = rec["snapshots"][index]["seconds"] / 60
            say(f"  {TARGET_NATS} nats reached {'by' if not exact else 'after'} epoch {rec['epochs_to_target']}: "
                f"{rec['minutes_to_target']:.1f} minutes")
        else:
            rec["minutes_at_last_snapshot"] = rec["snapshots"][-1]["seconds"] / 60
            say(f"  {TARGET_NATS} nats not reached in {rec['snapshots'][-1]['epoch']} epochs "
                f"({rec['minutes_at_last_snapshot']:.1f} minutes)")
    new, old = figures["recipes"]["new"], figures["recipes"]["previous"]
    if new["reached"] and old["reached"]:
        figures["time_to_quality_ratio"] = new["minutes_to_target"] / old["minutes_to_target"]
        say(f"time to {TARGET_NATS} nats, new / previous default: {figures['time_to_quality_ratio']:.2f}x "
            f"(goal <= 0.5x)")
    elif new["reached"]:
        figures["time_to_quality_ratio_below"] = new["minutes_to_target"] / old["minutes_at_last_snapshot"]
        say(f"time to {TARGET_NATS} nats, new / previous default: below "
            f"{figures['time_to_quality_ratio_below']:.2f}x (the previous default had not reached it when "
            f"stopped; goal <= 0.5x)")
    if args.result:
        sys.path.insert(0, str(ROOT / "bench"))
        from _evidence import write_result

        write_result(args.result, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())

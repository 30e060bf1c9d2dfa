"""Training: data -> VAE -> ``model.fit`` with Keras callbacks -> a run directory.

Callbacks: Keras's ``CSVLogger`` (metrics.csv) and ``BackupAndRestore`` (resumable
state: weights, optimizer, epoch), plus those of ``callbacks.py`` (timings, atomic
best/last weights, stop on NaN/Inf, a Ctrl-C that waits for the epoch's backup).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import __version__, plots
from .callbacks import AtomicCheckpoint, EpochTimer, FiniteBackupAndRestore, GracefulInterrupt, StopOnNonFinite
from .config import AUTO_STEPS_PER_EXECUTION, RunConfig, _reject_constant, atomic_savez, atomic_write_text, json_text
from .data import binarize_fixed, heldout_pipeline, load_dataset, train_pipeline
from .errors import TfvaeError
from .hardware import check_precision
from .locks import folder_lock
from .models import build_model
from .rundir import checkpoint_path, new_run_dir
from .sample import sample_means, sample_title

FIGURE_IMAGES = 16  # test images shown in reconstructions.png


def _git_commit():
    """HEAD's hash, with "+dirty" when tracked files changed; None outside a git checkout."""
    from .provenance import git_commit

    g = git_commit()
    return None if g["commit"] is None else g["commit"] + ("+dirty" if g["dirty"] else "")


def default_run_dir(cfg: RunConfig) -> Path:
    """runs/<dataset>-<arch>-z<D>-<YYYYmmdd-HHMMSS>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.arch}-z{cfg.model.latent_dim}-{stamp}"


STRATEGIES = ("default", "mirrored", "multiworker")


class Interrupted(TfvaeError):
    """Ctrl-C or SIGTERM stopped training after an epoch's backup; exit status 130 or 143."""

    exit_code = 130


class TrainingDiverged(TfvaeError):
    """The loss became NaN or Inf; exit status 3."""

    exit_code = 3


def make_strategy(name: str, devices=None):
    """The ``tf.distribute`` strategy for ``--strategy``.

    * ``default``: one device (TensorFlow's default strategy).
    * ``mirrored``: ``MirroredStrategy`` over all local GPUs, or ``devices``
      (e.g. ``["/gpu:0", "/gpu:1"]``); synchronous data parallelism in one process.
    * ``multiworker``: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``, any
      number of workers, trained by the custom loop of ``tfvae.distributed`` (Keras 3
      ``fit`` cannot run under it: keras-team/keras#20585).

    Raises:
        TfvaeError: unknown name, devices given without ``mirrored``, a bad ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise TfvaeError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if devices and name != "mirrored":
        raise TfvaeError("--devices needs --strategy mirrored")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if name == "multiworker":
        from .distributed import multiworker_strategy

        return multiworker_strategy()
    return tf.distribute.get_strategy()


def _completed_epochs(run_dir: Path) -> int:
    """Epochs saved in the run's BackupAndRestore state (0 when there is none)."""
    path = run_dir / "backup" / "training_metadata.json"
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _read_metrics(path: Path):
    """(header, rows) of metrics.csv, checked: an ``epoch`` column, every row as long as
    the header, epochs 0, 1, 2, ... in order, every other cell a number or empty.

    Raises:
        TfvaeError: names the file, the line and what is wrong.
    """
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TfvaeError(f"{path}: cannot be read ({exc}); refusing to resume, nothing was changed") from None
    if not rows or "epoch" not in rows[0]:
        raise TfvaeError(f"{path}: no header with an 'epoch' column; refusing to resume, nothing was changed")
    header, body = rows[0], rows[1:]
    col = header.index("epoch")
    for line, row in enumerate(body, start=2):
        bad = len(row) != len(header)
        if not bad:
            try:
                bad = int(row[col]) != line - 2
                for cell in row:
                    if cell not in ("", "nan", "inf", "-inf"):
                        float(cell)
            except ValueError:
                bad = True
        if bad:
            raise TfvaeError(f"{path}, line {line}: malformed or out-of-order row (expected epoch {line - 2}, "
                             f"{len(header)} columns); refusing to resume, nothing was changed")
    return header, body


def _valid_backup(weights: Path, metadata: Path, epochs: int):
    """The epoch a backup pair (weights .h5, training_metadata.json) holds, or None when
    either file is missing or damaged."""
    try:
        meta = json.loads(metadata.read_text(), parse_constant=_reject_constant)
        epoch = meta["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= epochs:
            return None
        import h5py

        with h5py.File(weights, "r") as f:
            if not len(f.keys()):
                return None
        return epoch
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def check_resumable(run_dir: Path, cfg: RunConfig) -> None:
    """Refuse a ``--resume`` whose state is damaged, before anything is touched.

    Checks ``metrics.csv`` (:func:`_read_metrics`) and the ``backup/`` pair; when the
    latest backup is damaged (a kill while it was written) and its previous copy
    (``.bkp``, Keras's double checkpoint) is whole, the copy is used.

    Raises:
        TfvaeError: a damaged ``metrics.csv``, a backup with neither a whole latest pair nor
            a whole previous pair, or fewer ``metrics.csv`` rows than completed epochs.
    """
    backup = run_dir / "backup"
    weights, meta = backup / "latest.weights.h5", backup / "training_metadata.json"
    done = 0
    if weights.exists() or meta.exists():
        done = _valid_backup(weights, meta, cfg.train.epochs)
        if done is None:
            prev = _valid_backup(Path(f"{weights}.bkp"), Path(f"{meta}.bkp"), cfg.train.epochs)
            if prev is None:
                raise TfvaeError(f"--resume {run_dir}: the backup in {backup} is damaged (and so is its previous "
                                 f"copy); refusing to resume, nothing was changed")
            for name in (weights, meta):
                tmp = name.with_name(f".{name.name}.restore")
                shutil.copyfile(f"{name}.bkp", tmp)
                os.replace(tmp, name)
            print(f"resume: the latest backup was damaged; using the previous copy (epoch {prev})", file=sys.stderr)
            done = prev
    metrics = run_dir / "metrics.csv"
    rows = 0
    if metrics.exists():
        rows = len(_read_metrics(metrics)[1])
    if rows < done:
        raise TfvaeError(f"--resume {run_dir}: metrics.csv has {rows} rows but the backup holds {done} completed "
                         f"epochs; refusing to resume, nothing was changed")


def _truncate_metrics(path: Path, epochs: int, monitor: str = "val_neg_elbo") -> float:
    """Keep the header and the rows of epochs < ``epochs`` (a resumed run rewrites the
    rest; the file is replaced atomically, never truncated in place); return the best
    ``monitor`` value among the kept rows."""
    if not path.is_file():
        return math.inf
    header, rows = _read_metrics(path)
    body = [r for r in rows if int(r[header.index("epoch")]) < epochs]
    if len(body) != len(rows):
        import io

        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([header] + body)
        atomic_write_text(path, buf.getvalue())
    col = header.index(monitor) if monitor in header else None
    values = [float(r[col]) for r in body if col is not None and r[col] not in ("", "nan")]
    return min(values, default=math.inf)


def train(cfg: RunConfig, run_dir=None, verbose="auto", command_line=None, resume: bool = False,
          strategy: str = "default", devices=None, deterministic: bool = False, resume_learning_rate=None,
          tensorboard: bool = True, callbacks=()) -> dict:
    """Train (see :func:`_train`) holding the run directory's lock (``tfvae.locks``), so a
    second ``train --resume``, ``evaluate`` or other writer of the same run refuses with
    this process's pid instead of interleaving its files."""
    import contextlib

    created = []  # the run directory this call created, if any
    with contextlib.ExitStack() as stack:
        try:
            return _train(cfg, run_dir, verbose, command_line, resume, strategy, devices, deterministic,
                          resume_learning_rate, stack, created, tensorboard, callbacks)
        except BaseException as exc:
            # A new run that fails before its first epoch is saved (a full disk, a crash)
            # leaves nothing to resume: remove it rather than leave half a run. A divergence
            # or an interruption keeps it: --resume (with a lower learning rate) starts it again.
            saved = created and ((created[0] / "backup" / "training_metadata.json").exists()
                                 or (created[0] / "summary.json").exists())
            if created and not saved and not isinstance(exc, (TfvaeError, KeyboardInterrupt)):
                shutil.rmtree(created[0], ignore_errors=True)
            raise


def _train(cfg: RunConfig, run_dir=None, verbose="auto", command_line=None, resume: bool = False,
           strategy: str = "default", devices=None, deterministic: bool = False, resume_learning_rate=None,
           locks=None, created=None, tensorboard: bool = True, extra_callbacks=()) -> dict:
    """Train a VAE and write (or, with ``resume``, continue) its run directory.

    Args:
        cfg: run configuration (validated here); ignored when resuming, where the run's
            own ``config.json`` is used.
        run_dir: output folder, which must not exist (default :func:`default_run_dir`);
            with ``resume``, the interrupted run.
        verbose: ``"auto"``: Keras's progress bar when standard output is a terminal,
            otherwise one line per epoch (:class:`tfvae.monitor.EpochLine`); 0: silent.
        command_line: recorded in ``config.json``.
        resume: continue from the last completed epoch (Keras ``BackupAndRestore``:
            weights, optimizer state and epoch counter); ``metrics.csv`` keeps one row per
            epoch.
        strategy, devices: see :func:`make_strategy`; ``batch_size`` is the global batch.
        deterministic: TensorFlow op determinism, so two runs with the same seed give
            bit-identical weights on the same machine.
        resume_learning_rate: with ``resume``, continue with this learning rate (for
            example a lower one after a divergence); recorded in ``config.json``'s
            ``meta.learning_rate_changes``.
        tensorboard: write TensorBoard logs to ``RUN_DIR/tensorboard`` (see
            :mod:`tfvae.monitor`).
        extra_callbacks: more Keras callbacks (``train(callbacks=...)``; library use, such
            as ``bench/time_to_quality.py``'s snapshots); at each epoch's end they run after
            validation and the checkpoints and see the weights that were validated (the
            averaged ones with ``ema_decay``).

    Returns:
        Summary dict: ``run_dir``, ``epochs``, ``seconds`` (wall time of this ``fit``),
        ``seconds_per_epoch`` and ``train_images_per_second`` (medians over this call's
        epochs), ``best_val_neg_elbo`` (nats per image), ``interrupted``.

    Raises:
        TfvaeError: bad configuration, missing data, an existing run directory, or (with
            ``resume``) a folder that is not an unfinished run.
        TrainingDiverged: the loss became NaN or Inf.
    """
    multi = strategy == "multiworker"
    distribution = make_strategy(strategy, devices) if multi else None  # before TensorFlow's first op
    chief = True
    if multi:
        from .distributed import is_chief

        chief = is_chief(distribution)
    if resume:
        from .rundir import read_config

        if run_dir is None:
            raise TfvaeError("--resume needs the run directory")
        run_dir = Path(run_dir)
        cfg = read_config(run_dir)
        if not chief:  # the other workers read the run's config.json and write nothing
            resume_learning_rate = None
    if resume and chief:
        locks.enter_context(folder_lock(run_dir, "train --resume"))
        if (run_dir / "summary.json").is_file():
            raise TfvaeError(f"--resume {run_dir}: the run already finished all {cfg.train.epochs} epochs")
        check_resumable(run_dir, cfg)
        if resume_learning_rate is not None and cfg.train.lr_schedule != "constant":
            raise TfvaeError(f"--learning-rate cannot be changed on resume with --lr-schedule {cfg.train.lr_schedule}")
        if resume_learning_rate is not None and resume_learning_rate != cfg.train.learning_rate:
            cfg.meta.setdefault("learning_rate_changes", []).append(
                {"from_epoch": _completed_epochs(run_dir), "old": cfg.train.learning_rate, "new": resume_learning_rate})
            cfg.train.learning_rate = resume_learning_rate
            cfg.validate()
            cfg.save(run_dir / "config.json")
    elif resume_learning_rate is not None:
        raise TfvaeError("resume_learning_rate needs resume")
    cfg = cfg.resolved()
    cfg.validate()
    if not resume:
        run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
        if run_dir.exists() and chief:  # checked before the data loads, and again when it is created
            raise TfvaeError(f"--run-dir {run_dir} already exists; choose a new --run-dir (runs are never overwritten)")
    if cfg.data.validation_size == 0:
        raise TfvaeError("--validation-size must be at least 1 (validation −ELBO picks the best checkpoint)")
    if distribution is None:
        distribution = make_strategy(strategy, devices)
    t = cfg.train
    check_precision(t.precision)
    if multi:
        from .distributed import refuse_unsupported

        refuse_unsupported(t.jit, t.steps_per_execution)
    if deterministic:
        tf.config.experimental.enable_op_determinism()

    data = load_dataset(cfg.data, announce=chief and not resume)
    if cfg.model.model == "cvae" and not resume:
        if data.train_labels is None or not data.class_names:
            raise TfvaeError(f"--model cvae needs labels; dataset {cfg.data.dataset} has none")
        cfg.model.num_classes = len(data.class_names)
    if resume and data.source and data.source["fingerprint"] != cfg.meta.get("image_folder", {}).get("fingerprint"):
        raise TfvaeError(f"--resume {run_dir}: the files in {cfg.data.image_dir} changed since the run started "
                         f"({data.source['files']} decodable files now, {cfg.meta.get('image_folder', {}).get('files')} "
                         "then); an exact resume needs the same files")
    if not resume:
        cfg.model.image_shape = list(data.image_shape)
        if data.source:  # an image folder: fix what was inferred, so every later command reads the same
            cfg.data.image_size = list(data.source["image_size"])
            cfg.data.channels = int(data.source["channels"])
            cfg.meta["image_folder"] = {k: data.source[k] for k in (
                "layout", "files", "skipped_files", "skipped_examples", "fingerprint")}
        cfg.meta.update({
            "class_names": data.class_names,
            "num_train": int(len(data.train)),
            "num_validation": int(len(data.validation)),
            "num_test": None if data.test is None else int(len(data.test)),
            "seed": t.seed,
            "deterministic": bool(deterministic),
            "strategy": strategy,
            "tfvae_version": __version__,
            "tensorflow_version": tf.__version__,
            "keras_version": keras.__version__,
            "python_version": platform.python_version(),
            "command_line": command_line or " ".join(sys.argv),
            "git_commit": _git_commit(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        resolve_speed(t, math.ceil(len(data.train) / t.batch_size), multi)
        if chief:
            run_dir = new_run_dir(run_dir)
            if created is not None:
                created.append(run_dir)
            locks.enter_context(folder_lock(run_dir, "train"))
            cfg.save(run_dir / "config.json")
        start_epoch, best_so_far = 0, math.inf
        if cfg.model.model == "pca":
            from .pca import fit_run

            return fit_run(cfg, data, run_dir)
    else:
        if list(data.image_shape) != list(cfg.model.image_shape):
            raise TfvaeError(f"--resume {run_dir}: the data now has shape {data.image_shape}, "
                             f"the run was trained on {tuple(cfg.model.image_shape)}")
        start_epoch = _completed_epochs(run_dir) if chief else 0
        best_so_far = math.inf
    if multi:
        from .distributed import broadcast_from_chief, check_last_batch

        check_last_batch(len(data.train), t.batch_size, distribution.num_replicas_in_sync)
        start_epoch = int(broadcast_from_chief(distribution, [], chief, extra=start_epoch))

    keras.utils.set_random_seed(t.seed)
    steps_per_epoch = math.ceil(len(data.train) / t.batch_size)
    m = cfg.model
    labels = labels_val = None
    if m.model == "cvae":
        labels, labels_val = data.train_labels, data.validation_labels
    with distribution.scope():
        model = build_model(m, beta=t.beta, kl_warmup_steps=t.kl_warmup_epochs * steps_per_epoch,
                            mc_samples=t.mc_samples, seed=t.seed, objective=t.objective,
                            iw_samples=t.train_iw_samples, free_bits=t.free_bits, precision=t.precision,
                            dataset_size=len(data.train))
        model.compile(optimizer=make_optimizer(t, steps_per_epoch), jit_compile=bool(t.jit),
                      steps_per_execution=t.steps_per_execution)
        if multi:
            model.optimizer.build(model.trainable_variables)  # its state is restored and broadcast
    if start_epoch > 0 and chief:
        best_so_far = _truncate_metrics(run_dir / "metrics.csv", start_epoch, model.checkpoint_monitor)

    samples = t.train_iw_samples if t.objective == "iwae" else t.mc_samples

    def make_train(split=None):
        return train_pipeline(data.train, t.batch_size, cfg.data.binarization, t.seed,
                              noise_shape=None if m.model == "ae" else (samples, m.latent_dim),
                              start_epoch=start_epoch, labels=labels, num_classes=m.num_classes, split=split)

    def make_val():
        return heldout_pipeline(data.validation, max(t.batch_size, 500), cfg.data.binarization,
                                cfg.data.binarization_seed, labels=labels_val, num_classes=m.num_classes,
                                noise_shape=None if m.model == "ae" else (samples, m.latent_dim), noise_seed=t.seed)

    if multi:
        from .distributed import distribute

        train_ds = distribute(distribution, make_train)
        val_ds = distribute(distribution, lambda split: split(make_val()))
    else:
        train_ds, val_ds = make_train(), make_val()
    timer, nonfinite, interrupt = EpochTimer(len(data.train)), StopOnNonFinite(), GracefulInterrupt()
    ema = EMAForEvaluation() if t.ema_decay > 0 else None
    callbacks = [
        timer,  # first, so the seconds it adds reach CSVLogger
        nonfinite,
        *([ema] if ema else []),  # validation runs on the averaged weights
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv"), append=start_epoch > 0),
        AtomicCheckpoint(run_dir / "checkpoints", monitor=model.checkpoint_monitor, best_so_far=best_so_far),
        # The checkpoints hold the averaged weights; training continues from the raw ones.
        *([ema.restore_callback()] if ema else []),
        # After the CSV row, so a kill between the two repeats the row (trimmed on resume)
        # rather than losing it.
        FiniteBackupAndRestore(str(run_dir / "backup"), double_checkpoint=True, delete_checkpoint=False),
        interrupt,  # last: stops only after the epoch's checkpoint and backup
    ]
    from .monitor import KL_IMAGES, EpochFigures, EpochLine, TensorBoardModelSummaries, tensorboard_callbacks

    # Pictures of every epoch (after the CSV row and the checkpoints, before the EMA restore:
    # from the weights just validated and saved); the final ones are the best checkpoint's.
    memo = {}

    def pictures(mdl):  # figures/ and TensorBoard show the same arrays: computed once per epoch
        step = int(mdl.optimizer.iterations.numpy())
        if memo.get("step") != step:
            memo.update(step=step, arrays=figure_images(mdl, cfg, data))
        return memo["arrays"]

    watchers = [EpochFigures(lambda mdl: write_figures(mdl, cfg, data, run_dir, final=False, images=pictures(mdl)),
                             stopping=lambda: interrupt.interrupted)]
    if tensorboard:
        shown = binarize_fixed(data.validation[:KL_IMAGES], cfg.data.binarization, cfg.data.binarization_seed)
        watchers += tensorboard_callbacks(run_dir / "tensorboard", shown, pictures)
    watchers += list(extra_callbacks)
    at = callbacks.index(interrupt) - 1 - (1 if ema else 0)
    callbacks[at:at] = watchers
    if verbose == "auto" and not sys.stdout.isatty():
        verbose = 0
        callbacks.insert(1, EpochLine(t.epochs))  # after the timer, which adds the epoch's seconds
    if t.lr_schedule == "constant":
        # After the restore, which also brings back the old learning rate: use the configured one.
        callbacks.insert(-1, keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: setattr(model.optimizer, "learning_rate", t.learning_rate)))
    start = time.perf_counter()
    if multi:
        from . import distributed

        if not chief:  # only the chief writes: keep the callbacks that write nothing
            callbacks = [c for c in callbacks if not isinstance(c, (
                EpochTimer, keras.callbacks.CSVLogger, AtomicCheckpoint, keras.callbacks.BackupAndRestore,
                EpochFigures, EpochLine, keras.callbacks.TensorBoard, TensorBoardModelSummaries))]
        try:
            history = distributed.fit(model, distribution, train_ds, val_ds, t.epochs, steps_per_epoch, start_epoch,
                                      callbacks, chief, say=print if verbose else None)
        except tf.errors.OpError as exc:
            raise TfvaeError(f"--strategy multiworker: another worker stopped answering ({type(exc).__name__}); "
                             f"restart every worker with: python cli.py train --resume {run_dir} "
                             f"--strategy multiworker") from None
        done_epochs = start_epoch + len(history.history.get("loss", []))
        if done_epochs < t.epochs and nonfinite.where is None and not interrupt.interrupted:
            interrupt.interrupted, interrupt.signum = True, signal.SIGTERM  # another worker was stopped
    else:
        history = model.fit(train_ds, steps_per_epoch=steps_per_epoch, validation_data=val_ds, epochs=t.epochs,
                            callbacks=callbacks,
                            verbose=verbose, shuffle=False)  # the pipeline shuffles
    seconds = time.perf_counter() - start

    if nonfinite.where is not None:
        epoch, step = nonfinite.where
        raise TrainingDiverged(
            f"training diverged: the loss became NaN or Inf at epoch {epoch}, step {step}; likely causes: "
            f"--learning-rate {t.learning_rate:g} too high, or a too small likelihood scale (--sigma / scale floor); "
            f"the last good weights are in {run_dir / 'checkpoints'}")
    if not chief:
        if interrupt.interrupted:
            raise Interrupted("this worker stopped with the others; the chief kept the run's backup")
        return {"run_dir": str(run_dir), "epochs": t.epochs, "worker": "not the chief: wrote nothing"}
    if interrupt.interrupted:
        done = _completed_epochs(run_dir)
        stop = Interrupted(f"interrupted ({'Ctrl-C' if interrupt.signum == signal.SIGINT else 'SIGTERM'}) after "
                           f"epoch {done} of {t.epochs}; continue with: python cli.py train --resume {run_dir}")
        stop.exit_code = 128 + int(interrupt.signum)  # 130 for Ctrl-C, 143 for SIGTERM
        raise stop

    shutil.rmtree(run_dir / "backup", ignore_errors=True)  # finished: nothing left to resume
    # Pictures use the weights with the best validation −ELBO, as evaluate does.
    model.load_weights(str(checkpoint_path(run_dir, "best")))
    if m.model == "ae":
        fit_code_gaussian(model, data.train, cfg, run_dir)
    write_figures(model, cfg, data, run_dir)
    val = history.history.get(model.checkpoint_monitor, [])
    val_elbo = history.history.get("val_neg_elbo", [])
    summary = {
        "run_dir": str(run_dir),
        "epochs": t.epochs,
        "resumed_from_epoch": start_epoch,
        "seconds": seconds,
        "seconds_per_epoch": float(np.median([e for e, _ in timer.history])) if timer.history else None,
        "train_images_per_second": float(np.median([len(data.train) / s for _, s in timer.history]))
        if timer.history else None,
        "best_val_neg_elbo": float(min(val_elbo)) if val_elbo else None,
        "final_val_neg_elbo": float(val_elbo[-1]) if val_elbo else None,
        "checkpoint_monitor": model.checkpoint_monitor,
        "best_val_monitor": float(min([best_so_far] + list(val))),
    }
    atomic_write_text(run_dir / "summary.json", json_text(summary))
    return summary


def resolve_speed(t, steps_per_epoch: int, multi: bool) -> None:
    """Fill in ``steps_per_execution`` left as None (auto) in the TrainConfig ``t``:
    :data:`tfvae.config.AUTO_STEPS_PER_EXECUTION`, at most ``steps_per_epoch``; 1 under
    the multi-worker loop. The value is then recorded in ``config.json``."""
    if t.steps_per_execution is None:
        t.steps_per_execution = 1 if multi else max(1, min(AUTO_STEPS_PER_EXECUTION, steps_per_epoch))


def make_optimizer(t, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam with ``learning_rate`` held constant or cosine-decayed to 1% over all epochs,
    Keras's exponential moving average of the weights when ``ema_decay`` > 0, and
    dynamic loss scaling under ``mixed_float16``."""
    lr = t.learning_rate
    if t.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=t.epochs * steps_per_epoch, alpha=0.01)
    adam = keras.optimizers.Adam(lr, use_ema=True, ema_momentum=t.ema_decay) if t.ema_decay > 0 \
        else keras.optimizers.Adam(lr)
    if t.precision == "mixed_float16":  # float16 gradients underflow without loss scaling
        return keras.optimizers.LossScaleOptimizer(adam)
    return adam


class EMAForEvaluation(keras.callbacks.Callback):
    """During ``fit``, validate and checkpoint the optimizer's moving average of the weights.

    At validation start the model's trainable variables are swapped for their averages
    (the raw values are kept aside); the callback from :meth:`restore_callback`, placed
    after the checkpoint callbacks, swaps the raw values back at the epoch's end, so
    training continues from them and the checkpoints hold the averages.
    """

    def __init__(self):
        super().__init__()
        self._raw = None

    def on_test_begin(self, logs=None):
        if self._raw is not None:
            return
        optimizer = getattr(self.model.optimizer, "inner_optimizer", self.model.optimizer)  # loss scaling
        averages = optimizer._model_variables_moving_average
        variables = self.model.trainable_variables
        self._raw = [v.numpy() for v in variables]
        for var, avg in zip(variables, averages):
            var.assign(avg)

    def restore(self):
        if self._raw is None:
            return
        for var, raw in zip(self.model.trainable_variables, self._raw):
            var.assign(raw)
        self._raw = None

    def restore_callback(self) -> keras.callbacks.Callback:
        return keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: self.restore())


CODE_GAUSSIAN = "code_gaussian.npz"


def fit_code_gaussian(model, images, cfg: RunConfig, run_dir) -> None:
    """Fit N(mean, cov) to an autoencoder's codes of the training images and save it as
    RUN_DIR/code_gaussian.npz (mean [D], cov [D, D] float64)."""
    from .latent import posterior_means

    x = binarize_fixed(images, cfg.data.binarization, cfg.data.binarization_seed)
    codes = posterior_means(model, x).astype(np.float64)
    mean, cov = codes.mean(axis=0), np.cov(codes, rowvar=False).reshape(codes.shape[1], codes.shape[1])
    atomic_savez(Path(run_dir) / CODE_GAUSSIAN, mean=mean, cov=cov)
    model.code_gaussian = (mean, cov)


def figure_images(model, cfg: RunConfig, data):
    """The arrays of figures/: (originals [16, H, W, C] (test images, or validation images
    when the test split is not loaded), their reconstructions E[x|z = mean of q(z|x)],
    samples [64, H, W, C] E[x|z] for z ~ p(z) drawn with the run's seed), float32 in [0, 1]."""
    shown = data.test if data.test is not None else data.validation
    shown_labels = data.test_labels if data.test is not None else data.validation_labels
    originals = binarize_fixed(shown[:FIGURE_IMAGES], cfg.data.binarization, cfg.data.binarization_seed)
    onehot = None
    if getattr(model, "conditional", False):
        onehot = np.eye(cfg.model.num_classes, dtype=np.float32)[shown_labels[:FIGURE_IMAGES]]
    recon = model.decode_mean(model.encode_mean(originals, onehot), onehot).numpy()
    return originals, recon, sample_means(model, 64, seed=cfg.train.seed)


def write_figures(model, cfg: RunConfig, data, run_dir, final: bool = True, images=None) -> None:
    """reconstructions.png (test images above reconstructions), samples.png, loss.png
    (and, for a finished autoencoder, samples_fitted.png from the Gaussian fitted to its
    codes), each written atomically. ``final=False``: the per-epoch figures of a run in progress;
    ``images``: the arrays of :func:`figure_images`, when already computed."""
    figures = Path(run_dir) / "figures"
    originals, recon, samples = images if images is not None else figure_images(model, cfg, data)
    which = "test" if data.test is not None else "validation"
    plots.save_image_grid(np.concatenate([originals, recon]), figures / "reconstructions.png", rows=2,
                          title=f"{which} images (top) and reconstructions E[x|z=mean of q(z|x)] (bottom)")
    plots.save_image_grid(samples, figures / "samples.png", rows=8, title=sample_title(model))
    if cfg.model.model == "ae" and final:
        plots.save_image_grid(sample_means(model, 64, seed=cfg.train.seed, source="fitted"),
                              figures / "samples_fitted.png", rows=8, title=sample_title(model, "fitted"))
    plots.save_loss_curves(Path(run_dir) / "metrics.csv", figures / "loss.png")


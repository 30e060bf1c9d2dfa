"""``train``: one training run from its configuration to its run directory (see :mod:`tfvae.training`)."""

from __future__ import annotations

import math
import shutil
import time

import keras

from ..config import RunConfig
from ..errors import TfvaeError
from ..models import registry
from .fit import build_for_training, finish, pipelines, run_epochs, training_callbacks
from .setup import _truncate_metrics, open_run

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
            otherwise one line per epoch (:class:`tfvae.training.monitor.EpochLine`); 0: silent.
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
            :mod:`tfvae.training.monitor`).
        extra_callbacks: more Keras callbacks (``train(callbacks=...)``; library use, such
            as ``bench/time_to_quality.py``'s snapshots); at each epoch's end they run after
            validation and the checkpoints and see the weights that were validated (the
            averaged ones with ``ema_decay``).

    Returns:
        Summary dict: ``run_dir``, ``epochs``, ``seconds`` (wall time of this ``fit``'s epochs),
        ``artifacts_seconds`` (what the family fits after the epochs: a VQ-VAE's prior),
        ``seconds_per_epoch`` and ``train_images_per_second`` (medians over this call's
        epochs), ``best_val_neg_elbo`` (nats per image), ``interrupted``.

    Raises:
        TfvaeError: bad configuration, missing data, an existing run directory, or (with
            ``resume``) a folder that is not an unfinished run.
        TrainingDiverged: the loss became NaN or Inf.
    """
    run = open_run(cfg, run_dir, command_line, resume, strategy, devices, deterministic, resume_learning_rate,
                   locks, created)
    family = registry.of(run.cfg)
    if not family.keras:  # fitted in closed form (pca)
        return family.resolve("fit")(run.cfg, run.data, run.run_dir)
    t = run.cfg.train
    keras.utils.set_random_seed(t.seed)
    steps_per_epoch = math.ceil(len(run.data.train) / t.batch_size)
    model = build_for_training(run, steps_per_epoch)
    best_so_far = math.inf
    if run.start_epoch > 0 and run.chief:
        best_so_far = _truncate_metrics(run.run_dir / "metrics.csv", run.start_epoch, model.checkpoint_monitor)
    train_ds, val_ds = pipelines(run)
    watch = training_callbacks(model, run, best_so_far, verbose, tensorboard, extra_callbacks)
    start = time.perf_counter()
    history = run_epochs(model, run, watch, train_ds, val_ds, steps_per_epoch, verbose)
    return finish(model, run, watch, history, time.perf_counter() - start, best_so_far)

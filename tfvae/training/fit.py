"""The Keras ``fit`` path and the multi-worker loop of one training run: the model and its
optimizer, the input pipelines, the callbacks, the epochs, and the summary.

Callbacks: Keras's ``CSVLogger`` (metrics.csv) and ``BackupAndRestore`` (resumable
state: weights, optimizer, epoch), plus those of :mod:`tfvae.training.callbacks` (timings,
atomic best/last weights, stop on NaN/Inf, a Ctrl-C that waits for the epoch's backup), the
per-epoch figures and TensorBoard (:mod:`tfvae.training.monitor`).
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from ..config import atomic_write_text, json_text
from ..data import binarize_fixed, heldout_pipeline, train_pipeline
from ..errors import TfvaeError
from ..models import registry
from ..rundir import checkpoint_path
from .callbacks import AtomicCheckpoint, EpochTimer, FiniteBackupAndRestore, GracefulInterrupt, StopOnNonFinite
from .figures import figure_images, write_figures
from .setup import Interrupted, Run, TrainingDiverged, _completed_epochs


def make_optimizer(t, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam (AdamW when ``weight_decay`` > 0, its kernels decayed and its biases not) with
    ``learning_rate`` held constant or cosine-decayed to 1% over all epochs, Keras's
    exponential moving average of the weights when ``ema_decay`` > 0, and dynamic loss
    scaling under ``mixed_float16``."""
    lr = t.learning_rate
    if t.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=t.epochs * steps_per_epoch, alpha=0.01)
    ema = {"use_ema": True, "ema_momentum": t.ema_decay} if t.ema_decay > 0 else {}
    if t.weight_decay > 0:
        adam = keras.optimizers.AdamW(lr, weight_decay=t.weight_decay, **ema)
        adam.exclude_from_weight_decay(var_names=["bias"])
    else:
        adam = keras.optimizers.Adam(lr, **ema)
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


def build_for_training(run: Run, steps_per_epoch: int):
    """The run's model, built and compiled under its strategy (Adam, :func:`make_optimizer`)."""
    m, t = run.cfg.model, run.cfg.train
    with run.distribution.scope():
        model = registry.build_model(m, beta=t.beta, kl_warmup_steps=t.kl_warmup_epochs * steps_per_epoch,
                                     mc_samples=t.mc_samples, seed=t.seed, objective=t.objective,
                                     iw_samples=t.train_iw_samples, free_bits=t.free_bits, precision=t.precision,
                                     dataset_size=len(run.data.train))
        model.compile(optimizer=make_optimizer(t, steps_per_epoch), jit_compile=bool(t.jit),
                      steps_per_execution=t.steps_per_execution)
        if run.multi:
            model.optimizer.build(model.trainable_variables)  # its state is restored and broadcast
    return model


def pipelines(run: Run):
    """(training, validation) datasets: per-image noise ε [S, D] when the family's posterior
    has a scale, labels when it is conditional; distributed over the workers under the
    multi-worker loop."""
    cfg, data = run.cfg, run.data
    m, t = cfg.model, cfg.train
    family = registry.of(cfg)
    labels, labels_val = (data.train_labels, data.validation_labels) if family.conditional else (None, None)
    samples = t.train_iw_samples if t.objective == "iwae" else t.mc_samples
    noise = (samples, m.latent_dim) if family.posterior_scale else None

    def make_train(split=None):
        return train_pipeline(data.train, t.batch_size, cfg.data.binarization, t.seed, noise_shape=noise,
                              start_epoch=run.start_epoch, labels=labels, num_classes=m.num_classes, split=split)

    def make_val():
        return heldout_pipeline(data.validation, max(t.batch_size, 500), cfg.data.binarization,
                                cfg.data.binarization_seed, labels=labels_val, num_classes=m.num_classes,
                                noise_shape=noise, noise_seed=t.seed)

    if run.multi:
        from .multiworker import distribute

        return distribute(run.distribution, make_train), distribute(run.distribution, lambda split: split(make_val()))
    return make_train(), make_val()


@dataclass
class Watch:
    """The callbacks of a run, and those whose state ``train`` reads afterwards."""

    callbacks: list
    timer: EpochTimer
    nonfinite: StopOnNonFinite
    interrupt: GracefulInterrupt


def training_callbacks(model, run: Run, best_so_far: float, verbose, tensorboard: bool, extra_callbacks) -> Watch:
    """The callbacks in their order (see the module docstring); ``verbose`` may become 0
    (one line per epoch instead of a progress bar) when standard output is not a terminal."""
    cfg, data, run_dir, t = run.cfg, run.data, run.run_dir, run.cfg.train
    timer, nonfinite, interrupt = EpochTimer(len(data.train)), StopOnNonFinite(), GracefulInterrupt()
    ema = EMAForEvaluation() if t.ema_decay > 0 else None
    callbacks = [
        timer,  # first, so the seconds it adds reach CSVLogger
        nonfinite,
        *([ema] if ema else []),  # validation runs on the averaged weights
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv"), append=run.start_epoch > 0),
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
        callbacks.insert(1, EpochLine(t.epochs))  # after the timer, which adds the epoch's seconds
    if t.lr_schedule == "constant":
        # After the restore, which also brings back the old learning rate: use the configured one.
        callbacks.insert(-1, keras.callbacks.LambdaCallback(
            on_train_begin=lambda logs: setattr(model.optimizer, "learning_rate", t.learning_rate)))
    if run.multi and not run.chief:  # only the chief writes: keep the callbacks that write nothing
        callbacks = [c for c in callbacks if not isinstance(c, (
            EpochTimer, keras.callbacks.CSVLogger, AtomicCheckpoint, keras.callbacks.BackupAndRestore,
            EpochFigures, EpochLine, keras.callbacks.TensorBoard, TensorBoardModelSummaries))]
    return Watch(callbacks, timer, nonfinite, interrupt)


def run_epochs(model, run: Run, watch: Watch, train_ds, val_ds, steps_per_epoch: int, verbose):
    """The epochs: Keras ``fit``, or the multi-worker loop; returns the Keras History."""
    t = run.cfg.train
    if verbose == "auto" and not sys.stdout.isatty():
        verbose = 0  # EpochLine prints one line per epoch
    if not run.multi:
        return model.fit(train_ds, steps_per_epoch=steps_per_epoch, validation_data=val_ds, epochs=t.epochs,
                         callbacks=watch.callbacks, verbose=verbose, shuffle=False)  # the pipeline shuffles
    from . import multiworker

    try:
        history = multiworker.fit(model, run.distribution, train_ds, val_ds, t.epochs, steps_per_epoch,
                                  run.start_epoch, watch.callbacks, run.chief, say=print if verbose else None)
    except tf.errors.OpError as exc:
        raise TfvaeError(f"--strategy multiworker: another worker stopped answering ({type(exc).__name__}); "
                         f"restart every worker with: python cli.py train --resume {run.run_dir} "
                         f"--strategy multiworker") from None
    done_epochs = run.start_epoch + len(history.history.get("loss", []))
    if done_epochs < t.epochs and watch.nonfinite.where is None and not watch.interrupt.interrupted:
        watch.interrupt.interrupted, watch.interrupt.signum = True, signal.SIGTERM  # another worker was stopped
    return history


def finish(model, run: Run, watch: Watch, history, seconds: float, best_so_far: float) -> dict:
    """After the epochs: raise for a divergence or an interruption; otherwise drop the
    backup, load the best checkpoint, write the final figures (and an autoencoder's fitted
    Gaussian) and ``summary.json``, and return the summary.

    Raises:
        TrainingDiverged: the loss became NaN or Inf.
        Interrupted: Ctrl-C or SIGTERM (exit status 130 or 143).
    """
    cfg, data, run_dir, t = run.cfg, run.data, run.run_dir, run.cfg.train
    if watch.nonfinite.where is not None:
        epoch, step = watch.nonfinite.where
        raise TrainingDiverged(
            f"training diverged: the loss became NaN or Inf at epoch {epoch}, step {step}; likely causes: "
            f"--learning-rate {t.learning_rate:g} too high, or a too small likelihood scale (--sigma / scale floor); "
            f"the last good weights are in {run_dir / 'checkpoints'}")
    if not run.chief:
        if watch.interrupt.interrupted:
            raise Interrupted("this worker stopped with the others; the chief kept the run's backup")
        return {"run_dir": str(run_dir), "epochs": t.epochs, "worker": "not the chief: wrote nothing"}
    if watch.interrupt.interrupted:
        done = _completed_epochs(run_dir)
        signum = watch.interrupt.signum
        stop = Interrupted(f"interrupted ({'Ctrl-C' if signum == signal.SIGINT else 'SIGTERM'}) after "
                           f"epoch {done} of {t.epochs}; continue with: python cli.py train --resume {run_dir}")
        stop.exit_code = 128 + int(signum)  # 130 for Ctrl-C, 143 for SIGTERM
        raise stop

    # Pictures use the weights with the best validation −ELBO, as evaluate does.
    model.load_weights(str(checkpoint_path(run_dir, "best")))
    started = time.perf_counter()
    model.fit_artifacts(data, cfg, run_dir)  # an autoencoder's code Gaussian, a VQ-VAE's prior
    artifacts_seconds = time.perf_counter() - started
    write_figures(model, cfg, data, run_dir)
    # Only now is nothing left to resume: a run stopped while its artifacts were fitted (a
    # VQ-VAE's prior) resumes with all its epochs done and fits them again.
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    timer = watch.timer
    val = history.history.get(model.checkpoint_monitor, [])
    val_elbo = history.history.get("val_neg_elbo", [])
    summary = {
        "run_dir": str(run_dir),
        "epochs": t.epochs,
        "resumed_from_epoch": run.start_epoch,
        "seconds": seconds,
        "artifacts_seconds": artifacts_seconds,
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



"""Watching a training run: figures every epoch, TensorBoard logs, one log line per epoch.

* :class:`EpochFigures` rewrites ``figures/`` (samples, reconstructions, loss curves) at
  the end of every epoch (within a 5% time budget, and always when Ctrl-C or SIGTERM stops
  training), atomically, from the weights that were just validated and checkpointed, so an
  interrupted run has its pictures.
* :func:`tensorboard_callbacks`: Keras's ``TensorBoard`` callback (train and validation
  −ELBO, reconstruction, KL, KL weight, learning rate: the ``train`` and ``validation``
  runs) plus :class:`TensorBoardModelSummaries` (``tf.summary``, where Keras has nothing:
  the KL of each latent dimension on a fixed validation subset, as a histogram and one
  scalar per dimension, and images of samples and reconstructions: the ``model`` run).
* :class:`EpochLine`: when standard output is not a terminal (CI logs, ``nohup``, a pipe),
  one line per epoch instead of Keras's progress bar.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .. import distributions as dist
from ..models import registry

KL_IMAGES = 500  # validation images whose posteriors give the per-dimension KL in TensorBoard


def _finite(logs, keys=("loss",)) -> bool:
    return all(math.isfinite(float(logs[k])) for k in keys if k in (logs or {}))


class EpochFigures(keras.callbacks.Callback):
    """Calls ``write(model)`` at the end of epochs whose loss is finite: the first epoch of
    the fit, every epoch whose training was stopped by a signal (``stopping()`` true), and
    otherwise every epoch as long as drawing costs at most ``budget`` of the wall time
    (epochs of a few seconds, as in small tests, are drawn less often; a default MNIST epoch,
    tens of seconds, always).

    Placed after the checkpoint callbacks and before the EMA restore, so the pictures come
    from the weights that were validated and checkpointed (the moving average when
    ``--ema-decay`` > 0), and after ``CSVLogger``, so ``loss.png`` includes the epoch.

    Args:
        write: ``write(model)`` draws the figures.
        stopping: ``stopping()`` -> True when training stops after this epoch (Ctrl-C, SIGTERM).
        budget: the largest share of wall time the figures may take (0.05: 5%).
    """

    def __init__(self, write, stopping=lambda: False, budget: float = 0.05):
        super().__init__()
        self.write = write
        self.stopping = stopping
        self.budget = budget
        self.seconds = []  # wall time of each drawing (s)
        self.epochs = []  # the epochs drawn (from 0)
        self._last_end = None

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        now = time.perf_counter()
        due = (self._last_end is None or self.stopping()
               or self.budget * (now - self._last_end) >= self.seconds[-1])
        if not due:
            return
        self.write(self.model)
        self._last_end = time.perf_counter()
        self.seconds.append(self._last_end - now)
        self.epochs.append(epoch)


class TensorBoardModelSummaries(keras.callbacks.Callback):
    """Per-epoch ``tf.summary`` records of the model itself, in ``LOG_DIR/model``.

    * ``kl_per_dimension`` (histogram) and ``kl_per_dimension/z<d>`` (scalars): the mean
      over ``images`` of KL(q(z_d|x) || N(0, 1)) in nats, the quantity behind active units
      (Burda et al. 2015, section 5.2); standard-normal prior only.
    * ``samples``: E[x|z] for fixed draws z ~ p(z) (the same draws every epoch);
      ``reconstructions``: E[x|z = mean of q(z|x)] of the first images.

    Args:
        log_dir: ``runs/<name>/tensorboard``.
        images: float32 [N, H, W, C] fixed validation images (already binarized when the
            run binarizes), for the per-dimension KL.
        pictures: ``pictures(model)`` -> (originals, reconstructions, samples), each float32
            [n, H, W, C] in [0, 1] (the arrays of ``figures/``).
    """

    def __init__(self, log_dir, images, pictures):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(Path(log_dir) / "model"))
        self.images = tf.constant(images[:KL_IMAGES], tf.float32)
        self.pictures = pictures

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        model = self.model
        originals, recon, samples = self.pictures(model)
        with self.writer.as_default(step=epoch):
            if model.config.prior == "standard" and registry.of(model.config).variational \
                    and not registry.of(model.config).conditional:
                q = model.posterior(self.images)
                kl = tf.reduce_mean(dist.kl_per_dimension(q.mean(), q.stddev()), axis=0)
                tf.summary.histogram("kl_per_dimension", kl,
                                     description="KL(q(z_d|x) || N(0,1)) per latent dimension, nats, mean over "
                                                 f"{int(self.images.shape[0])} validation images")
                for d, value in enumerate(kl.numpy()):
                    tf.summary.scalar(f"kl_per_dimension/z{d:03d}", float(value))
            tf.summary.image("samples", samples[:16], max_outputs=16, description="E[x|z], z ~ p(z), fixed draws")
            tf.summary.image("reconstructions", np.concatenate([originals[:8], recon[:8]]), max_outputs=16,
                             description="8 held-out images, then their E[x|z = mean of q(z|x)]")
        self.writer.flush()

    def on_train_end(self, logs=None):
        self.writer.close()


def tensorboard_callbacks(log_dir, validation_images, pictures) -> list:
    """Keras's ``TensorBoard`` (epoch scalars; no graph, profiler or weight histograms,
    which cost time and disk) and :class:`TensorBoardModelSummaries`."""
    return [keras.callbacks.TensorBoard(log_dir=str(log_dir), histogram_freq=0, write_graph=False,
                                        write_images=False, update_freq="epoch", profile_batch=0),
            TensorBoardModelSummaries(log_dir, validation_images, pictures)]


class EpochLine(keras.callbacks.Callback):
    """One line per epoch on ``stream`` (for logs that are not a terminal), e.g.
    ``epoch 3/100: loss 95.21 (reconstruction 80.10, KL 15.11); validation −ELBO 94.80; 22.1 s``."""

    def __init__(self, epochs: int, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        parts = [f"epoch {epoch + 1}/{self.epochs}: loss {float(logs.get('loss', math.nan)):.2f}"]
        if "reconstruction" in logs and "kl" in logs:
            parts[0] += f" (reconstruction {float(logs['reconstruction']):.2f}, KL {float(logs['kl']):.2f})"
        if "val_neg_elbo" in logs:
            parts.append(f"validation −ELBO {float(logs['val_neg_elbo']):.2f}")
        elif "val_loss" in logs:
            parts.append(f"validation loss {float(logs['val_loss']):.2f}")
        if "epoch_seconds" in logs:
            parts.append(f"{float(logs['epoch_seconds']):.1f} s")
        print("; ".join(parts), file=self.stream or sys.stdout, flush=True)

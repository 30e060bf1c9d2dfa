"""Training callbacks that Keras does not ship in the form a run directory needs.

Keras's own ``CSVLogger`` and ``BackupAndRestore`` do the logging and the resumable
training state; these add timings, atomic weight files, a clear stop on NaN/Inf, and a
Ctrl-C that waits for the epoch's backup.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

import keras


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (training and validation) and ``train_images_per_second``
    (training steps only) to each epoch's logs, before CSVLogger writes them."""

    def __init__(self, n_train: int):
        super().__init__()
        self.n_train = n_train
        self.history = []  # (epoch seconds, training seconds)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()
        self._train_end = None

    def on_test_begin(self, logs=None):
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        train_seconds = (self._train_end or end) - self._start
        if logs is not None:
            logs["epoch_seconds"] = end - self._start
            logs["train_images_per_second"] = self.n_train / train_seconds
        self.history.append((end - self._start, train_seconds))


def save_weights_atomically(model, path) -> None:
    """``model.save_weights`` to a temporary file beside ``path``, then rename over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name[:-len('.weights.h5')]}.tmp.weights.h5")
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


class AtomicCheckpoint(keras.callbacks.Callback):
    """Writes ``last.weights.h5`` every epoch and ``best.weights.h5`` when ``monitor``
    improves, each atomically (temporary file + rename); an epoch whose metrics are not
    finite writes nothing, so the files always hold the last good weights.

    Args:
        best_so_far: the best ``monitor`` value of earlier epochs (when resuming).
    """

    def __init__(self, folder, monitor: str = "val_neg_elbo", best_so_far: float = math.inf):
        super().__init__()
        self.folder = Path(folder)
        self.monitor = monitor
        self.best = best_so_far

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if not all(math.isfinite(float(v)) for k, v in logs.items() if k in ("loss", self.monitor)):
            return
        save_weights_atomically(self.model, self.folder / "last.weights.h5")
        value = float(logs.get(self.monitor, math.inf))
        if value < self.best:
            self.best = value
            save_weights_atomically(self.model, self.folder / "best.weights.h5")


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is NaN or Inf and remembers where
    (``epoch`` and ``step``, both counted from 1)."""

    def __init__(self):
        super().__init__()
        self.where = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.where = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class GracefulInterrupt(keras.callbacks.Callback):
    """First Ctrl-C (SIGINT) or SIGTERM: finish the epoch (its checkpoint and backup are
    written), then stop. A second signal stops at once (KeyboardInterrupt).
    ``interrupted`` tells whether it happened and ``signum`` which signal it was, so a job
    pre-empted by a scheduler (Kubernetes, Slurm send SIGTERM) loses nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, say=print):
        super().__init__()
        self.say = say
        self.interrupted = False
        self.signum = None
        self._previous = {}

    def _handler(self, signum, frame):
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        self.signum = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self.say(f"\n{name}: stopping after this epoch's checkpoint (a second signal stops at once)")

    def on_train_begin(self, logs=None):
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handler)
            except ValueError:  # not the main thread: leave the signals alone
                pass

    def on_epoch_end(self, epoch, logs=None):
        if self.interrupted:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


class FiniteBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras's ``BackupAndRestore`` that never backs up an epoch whose loss is NaN/Inf,
    so a resumed run starts from the last good state."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return
        super().on_epoch_end(epoch, logs)

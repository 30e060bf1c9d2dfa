"""Training: data -> VAE -> ``model.fit`` with Keras callbacks -> a run directory.

Callbacks are Keras's own: ``CSVLogger`` (metrics.csv), ``ModelCheckpoint`` (best and
last weights), ``TerminateOnNaN``; plus :class:`EpochTimer`, which adds the seconds and
training images per second of each epoch to the logged metrics.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import __version__, plots
from .config import RunConfig, atomic_write_text
from .data import binarize_fixed, heldout_pipeline, load_dataset, train_pipeline
from .errors import TfvaeError
from .models import build_model
from .rundir import checkpoint_path, new_run_dir
from .sample import sample_means

FIGURE_IMAGES = 16  # test images shown in reconstructions.png


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` (training and validation) and ``train_images_per_second``
    (training steps only) to each epoch's logs, before CSVLogger writes them."""

    def __init__(self, n_train: int):
        super().__init__()
        self.n_train = n_train
        self.history = []

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


def default_run_dir(cfg: RunConfig) -> Path:
    """runs/<dataset>-<arch>-z<D>-<YYYYmmdd-HHMMSS>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.arch}-z{cfg.model.latent_dim}-{stamp}"


def train(cfg: RunConfig, run_dir=None, verbose="auto", command_line=None) -> dict:
    """Train a VAE and write its run directory.

    Args:
        cfg: run configuration (validated here).
        run_dir: output folder, which must not exist; default :func:`default_run_dir`.
        verbose: Keras ``fit`` verbosity (``"auto"``: a progress bar).
        command_line: recorded in ``config.json``.

    Returns:
        Summary dict: ``run_dir``, ``epochs``, ``seconds`` (wall time of ``fit``),
        ``seconds_per_epoch`` and ``train_images_per_second`` (medians over epochs),
        ``best_val_neg_elbo`` (nats per image).

    Raises:
        TfvaeError: bad configuration, missing data, or an existing run directory.
    """
    cfg = cfg.resolved()
    cfg.validate()
    run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
    if run_dir.exists():  # checked before the data loads, and again when it is created
        raise TfvaeError(f"--run-dir {run_dir} already exists; choose a new --run-dir (runs are never overwritten)")

    data = load_dataset(cfg.data)
    cfg.model.image_shape = list(data.image_shape)
    cfg.meta.update({
        "class_names": data.class_names,
        "num_train": int(len(data.train)),
        "num_validation": int(len(data.validation)),
        "num_test": None if data.test is None else int(len(data.test)),
        "tfvae_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        "command_line": command_line or " ".join(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    if cfg.data.validation_size == 0:
        raise TfvaeError("--validation-size must be at least 1 (validation −ELBO picks the best checkpoint)")

    run_dir = new_run_dir(run_dir)
    cfg.save(run_dir / "config.json")

    t = cfg.train
    keras.utils.set_random_seed(t.seed)
    steps_per_epoch = math.ceil(len(data.train) / t.batch_size)
    model = build_model(cfg.model, beta=t.beta, kl_warmup_steps=t.kl_warmup_epochs * steps_per_epoch,
                        mc_samples=t.mc_samples, seed=t.seed)
    model.compile(optimizer=keras.optimizers.Adam(t.learning_rate), jit_compile=bool(t.jit))

    train_ds = train_pipeline(data.train, t.batch_size, cfg.data.binarization, t.seed)
    val_ds = heldout_pipeline(data.validation, max(t.batch_size, 500), cfg.data.binarization, cfg.data.binarization_seed)
    timer = EpochTimer(len(data.train))
    callbacks = [
        timer,  # first, so the seconds it adds reach CSVLogger
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv")),
        keras.callbacks.ModelCheckpoint(str(checkpoint_path(run_dir, "last")), save_weights_only=True),
        keras.callbacks.ModelCheckpoint(str(checkpoint_path(run_dir, "best")), save_weights_only=True,
                                        monitor="val_neg_elbo", mode="min", save_best_only=True),
    ]
    start = time.perf_counter()
    history = model.fit(train_ds, validation_data=val_ds, epochs=t.epochs, callbacks=callbacks,
                        verbose=verbose, shuffle=False)  # the pipeline shuffles
    seconds = time.perf_counter() - start

    val = history.history.get("val_neg_elbo", [])
    if not val or not np.all(np.isfinite(history.history.get("loss", [np.nan]))):
        raise TfvaeError(f"training stopped: the loss became NaN or Inf (see {run_dir / 'metrics.csv'}); "
                         "try a lower --learning-rate")

    # Pictures use the weights with the best validation −ELBO, as evaluate does.
    model.load_weights(str(checkpoint_path(run_dir, "best")))
    write_figures(model, cfg, data, run_dir)

    summary = {
        "run_dir": str(run_dir),
        "epochs": len(val),
        "seconds": seconds,
        "seconds_per_epoch": float(np.median([e for e, _ in timer.history])),
        "train_images_per_second": float(np.median([len(data.train) / s for _, s in timer.history])),
        "best_val_neg_elbo": float(np.min(val)),
        "final_val_neg_elbo": float(val[-1]),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def write_figures(model, cfg: RunConfig, data, run_dir) -> None:
    """reconstructions.png (test images above reconstructions), samples.png, loss.png."""
    figures = Path(run_dir) / "figures"
    shown = data.test if data.test is not None else data.validation
    originals = binarize_fixed(shown[:FIGURE_IMAGES], cfg.data.binarization, cfg.data.binarization_seed)
    z = model.posterior(originals).mean()
    recon = model.decode_mean(z).numpy()
    plots.save_image_grid(np.concatenate([originals, recon]), figures / "reconstructions.png", rows=2,
                          title="test images (top) and reconstructions E[x|z=mean of q(z|x)] (bottom)")
    plots.save_image_grid(sample_means(model, 64, seed=cfg.train.seed), figures / "samples.png", rows=8,
                          title="E[x|z], z ~ p(z) = N(0, I)")
    plots.save_loss_curves(Path(run_dir) / "metrics.csv", figures / "loss.png")


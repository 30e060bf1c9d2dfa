"""Generation: z from the prior (or, for a conditional VAE, with a chosen label), then
the likelihood mean E[x|z]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from . import plots
from .errors import TfvaeError
from .rundir import check_label, load_model

SOURCES = ("prior", "fitted")


def draw_latents(model, n: int, seed: int = 0, source: str = "prior") -> np.ndarray:
    """n codes z: float32 [n, D]. ``prior``: z ~ p(z) (N(0, I), or the learned prior);
    ``fitted``: an autoencoder's Gaussian fitted to its training codes. Noise from
    ``numpy.random.default_rng(seed)``, outside any graph.

    Raises:
        TfvaeError: ``fitted`` for a model without a fitted code Gaussian.
    """
    if source == "fitted":
        if getattr(model, "code_gaussian", None) is None:
            raise TfvaeError("--source fitted needs an autoencoder run (--model ae) with code_gaussian.npz")
        return model.sample_codes(n, seed)
    return model.sample_prior(n, seed)


def sample_means(model, n: int, seed: int = 0, label=None, source: str = "prior") -> np.ndarray:
    """Likelihood means E[x|z] for n draws of z (see :func:`draw_latents`).

    Args:
        label: for a conditional VAE, the class to generate (int), or None to cycle
            through the classes (sample i gets class i mod C).

    Returns:
        float32 [n, H, W, C] in [0, 1].
    """
    z = draw_latents(model, n, seed, source)
    onehot = None
    if getattr(model, "conditional", False):
        labels = np.full(n, label) if label is not None else np.arange(n) % model.num_classes
        onehot = tf.constant(np.eye(model.num_classes, dtype=np.float32)[labels])
    out = []
    for start in range(0, n, 1000):
        y = None if onehot is None else onehot[start:start + 1000]
        out.append(np.asarray(model.decode_mean(tf.constant(z[start:start + 1000]), y)))
    return np.concatenate(out)


def sample_title(model, source: str = "prior") -> str:
    """A figure title naming where z came from."""
    if source == "fitted":
        return "E[x|z], z ~ N(mean, cov) fitted to the training codes"
    prior = {"standard": "N(0, I)", "mog": "the learned mixture prior", "vamp": "the VampPrior"}[model.config.prior]
    if model.config.model == "hvae":
        return f"E[x|z], z ~ the hierarchical prior ({len(model.config.group_dims)} groups, top first)"
    return f"E[x|z], z ~ {prior}"


def save_samples(run_dir, n: int, out, seed: int = 0, checkpoint: str = "best", force: bool = False,
                 label=None, source: str = "prior") -> Path:
    """Draw ``n`` samples from a run's model and save them as a PNG grid.

    For a conditional VAE, ``label`` picks the class; without it the grid has one row
    per class (n rounded up to a multiple of the number of classes).

    Raises:
        TfvaeError: n < 1, ``out`` exists (without ``force``) or its folder is missing,
            ``run_dir`` is not a run, ``label`` for a model that is not conditional or
            outside 0..C−1.
    """
    if n < 1:
        raise TfvaeError(f"-n must be a positive integer, got {n}")
    out = plots.check_png_out(out, force)
    model, cfg = load_model(run_dir, checkpoint)
    if label is not None:
        check_label(cfg, label)
    if getattr(model, "conditional", False) and label is None:
        c = model.num_classes
        per_class = -(-n // c)
        z = draw_latents(model, per_class, seed)
        images = [np.asarray(model.decode_mean(tf.constant(z), np.eye(c, dtype=np.float32)[np.full(per_class, k)]))
                  for k in range(c)]
        plots.save_image_grid(np.concatenate(images), out, rows=c,
                              title=f"rows: classes 0–{c - 1}; columns: one z each")
        return out
    images = sample_means(model, n, seed, label=label, source=source)
    what = sample_title(model, source) + (f", label {label}" if label is not None else "")
    return plots.save_square_grid(images, out, title=f"{what}, seed {seed}")

"""Generation from the prior: z ~ N(0, I), then the likelihood mean E[x|z]."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from . import plots
from .errors import TfvaeError
from .rundir import load_model


def sample_means(model, n: int, seed: int = 0) -> np.ndarray:
    """Likelihood means E[x|z] for n draws z ~ p(z) = N(0, I).

    The noise comes from ``numpy.random.default_rng(seed)``, outside any graph.

    Returns:
        float32 [n, H, W, C] in [0, 1].
    """
    z = np.random.default_rng(seed).standard_normal((n, model.latent_dim)).astype(np.float32)
    return model.decode_mean(tf.constant(z)).numpy()


def save_samples(run_dir, n: int, out, seed: int = 0, checkpoint: str = "best", force: bool = False) -> Path:
    """Draw ``n`` samples from a run's model and save them as a PNG grid.

    Raises:
        TfvaeError: n < 1, ``out`` exists (without ``force``) or its folder is missing,
            or ``run_dir`` is not a run.
    """
    if n < 1:
        raise TfvaeError(f"-n must be a positive integer, got {n}")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise TfvaeError(f"--out {out}: expected a .png file name")
    if out.exists() and not force:
        raise TfvaeError(f"--out {out} already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise TfvaeError(f"--out {out}: folder {out.parent} does not exist")
    model, _ = load_model(run_dir, checkpoint)
    images = sample_means(model, n, seed)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    plots.save_image_grid(images, tmp, rows=max(1, round(math.sqrt(n))),
                          title=f"E[x|z], z ~ N(0, I), seed {seed}")
    tmp.replace(out)
    return out

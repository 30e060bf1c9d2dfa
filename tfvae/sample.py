"""Generation from the prior: z ~ N(0, I), then the likelihood mean E[x|z]."""

from __future__ import annotations

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
    out = plots.check_png_out(out, force)
    model, _ = load_model(run_dir, checkpoint)
    return plots.save_square_grid(sample_means(model, n, seed), out, title=f"E[x|z], z ~ N(0, I), seed {seed}")

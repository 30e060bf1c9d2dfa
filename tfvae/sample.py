"""Generation: z from the prior (or, for a conditional VAE, with a chosen label), then
the likelihood mean E[x|z]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from . import plots
from .errors import TfvaeError
from .codes import draw_latents, sample_means, sample_title
from .rundir import check_label, load_model

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

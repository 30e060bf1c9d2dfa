"""The figures of a run (``figures/``): reconstructions, samples and the loss curves,
rewritten every epoch and finally from the best checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import plots
from ..codes import sample_means, sample_title
from ..config import RunConfig
from ..data import binarize_fixed
from ..models import registry

FIGURE_IMAGES = 16  # test images shown in reconstructions.png


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
    code = "z_q(x), the nearest codes" if registry.of(cfg).discrete_codes else "z=mean of q(z|x)"
    plots.save_image_grid(np.concatenate([originals, recon]), figures / "reconstructions.png", rows=2,
                          title=f"{which} images (top) and reconstructions E[x|{code}] (bottom)")
    plots.save_image_grid(samples, figures / "samples.png", rows=8, title=sample_title(model))
    if registry.of(cfg).fitted_codes and final:
        plots.save_image_grid(sample_means(model, 64, seed=cfg.train.seed, source="fitted"),
                              figures / "samples_fitted.png", rows=8, title=sample_title(model, "fitted"))
    plots.save_loss_curves(Path(run_dir) / "metrics.csv", figures / "loss.png")


"""Codes and images of a trained model: posterior parameters of images in batches, draws
of z from the prior (or from a Gaussian fitted to an autoencoder's codes), and their
decoded means. Training's figures and the commands (sample, latent, compare, ...) share
them; this module imports no command module.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from .errors import TfvaeError
from .models import registry


def posterior_parameters(model, images, batch_size: int = 1000, labels=None) -> tuple:
    """(loc, scale) of q(z|x) for images [N, H, W, C] (labels one-hot [N, C] for a cvae),
    encoded ``batch_size`` at a time: float32 [N, D] each."""
    params = [model.encoder(model._with_labels(tf.constant(images[i:i + batch_size]),
                                               None if labels is None else labels[i:i + batch_size]))
              for i in range(0, len(images), batch_size)]
    if not params:
        return np.zeros((0, model.latent_dim), np.float32), np.zeros((0, model.latent_dim), np.float32)
    return tuple(np.concatenate([p[key].numpy() for p in params]) for key in ("loc", "scale"))


def posterior_means(model, images, batch_size: int = 1000) -> np.ndarray:
    """E_q[z|x] for images [N, H, W, C]: float32 [N, D]."""
    return posterior_parameters(model, images, batch_size)[0]


SOURCES = ("prior", "fitted", "uniform")


def draw_latents(model, n: int, seed: int = 0, source: str = "prior") -> np.ndarray:
    """n codes z: float32 [n, D]. ``prior``: z ~ p(z) (N(0, I), or the learned prior);
    ``fitted``: an autoencoder's Gaussian fitted to its training codes; ``uniform``: a VQ-VAE's
    code grids with every code drawn uniformly (as flattened code vectors). Noise from
    ``numpy.random.default_rng(seed)``, outside any graph.

    Raises:
        TfvaeError: ``fitted`` for a model without a fitted code Gaussian.
    """
    if source == "uniform":
        if not registry.of(model.config).discrete_codes:
            raise TfvaeError("--source uniform draws discrete codes uniformly: it needs --model "
                             + " or ".join(registry.with_capability(discrete_codes=True)))
        return model.sample_uniform(n, seed)
    if source == "fitted":
        if getattr(model, "code_gaussian", None) is None:
            raise TfvaeError("--source fitted needs a run with a Gaussian fitted to its training codes "
                             "(code_gaussian.npz; --model " + " or ".join(registry.with_capability(fitted_codes=True)) + ")")
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
    if source == "uniform":
        return "E[x|z_q], codes drawn uniformly"
    if registry.of(model.config).discrete_codes:
        if not model.prior_fitted:
            return "E[x|z_q], codes drawn uniformly (the prior is trained after the epochs)"
        return f"E[x|z_q], {model.grid[0]}×{model.grid[1]} codes ~ the learned prior"
    prior = {"standard": "N(0, I)", "mog": "the learned mixture prior", "vamp": "the VampPrior"}[model.config.prior]
    if registry.of(model.config).latent_groups:
        return f"E[x|z], z ~ the hierarchical prior ({len(model.group_dims)} groups, top first)"
    return f"E[x|z], z ~ {prior}"

"""The VAE's three distributions, built with ``tensorflow_probability`` from plain tensors.

* posterior q(z|x) = MultivariateNormalDiag(loc, scale), batch [B], event [D]
  (Kingma & Welling 2013, section 3; the "Gaussian encoder" of appendix C.2).
* prior p(z) = MultivariateNormalDiag(0, I), event [D], or a Gaussian mixture
  (learned mixture of Gaussians, VampPrior: :func:`mixture_prior`).
* the discretized logistic of 8-bit pixels (Salimans et al. 2017, eq. 2), event [H, W, C],
  one of the likelihoods p(x|z) (``tfvae.likelihoods`` owns them all).

``tfp.layers`` are Keras 2 layers; here the networks are plain Keras 3 models and the
distributions are made from their outputs inside the model's steps.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def posterior(loc, scale) -> tfd.Distribution:
    """q(z|x): diagonal Gaussian. ``loc``, ``scale``: float32 [..., D]; event shape [D]."""
    return tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale)


def prior(latent_dim: int, dtype=tf.float32) -> tfd.Distribution:
    """p(z) = N(0, I_D): event shape [D], empty batch shape."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim], dtype), scale_diag=tf.ones([latent_dim], dtype))


PIXEL_LEVELS = 256  # 8-bit pixels, x = k / 255, k = 0 ... 255


def discretized_logistic(loc, scale) -> tfd.Distribution:
    """The discretized logistic of 8-bit pixels (Salimans et al. 2017, PixelCNN++, eq. 2),
    one logistic per sub-pixel (no mixture), on the level scale k = 0 ... 255:

        P(k) = σ((k + ½ − μ) / s) − σ((k − ½ − μ) / s),  with the edge levels taking the
        tails: P(0) = σ((½ − μ) / s), P(255) = 1 − σ((254½ − μ) / s),

    where μ = 255·loc and s = 255·scale. Built from TFP's ``QuantizedDistribution`` of a
    ``Logistic`` shifted by ½ (as ``tfd.PixelCNN`` does), whose log-probability is
    computed from log-CDFs / log-survival functions for stability.

    Args:
        loc, scale: float32 [..., H, W, C] on the [0, 1] pixel scale (scale > 0).

    Returns:
        A distribution over levels k (float, integer-valued), batch shape of ``loc``.
    """
    levels = PIXEL_LEVELS - 1
    base = tfd.Logistic(loc=loc * levels - 0.5, scale=scale * levels)
    return tfd.QuantizedDistribution(base, low=0.0, high=float(levels))


class DiscretizedLogistic(tfd.Independent):
    """p(x|z) for pixels x = k / 255 in [0, 1]: independent :func:`discretized_logistic`
    per sub-pixel, event [H, W, C]. ``log_prob(x)`` (x float32 [..., H, W, C] in [0, 1],
    rounded to the nearest level) is the log-probability of the 8-bit image in nats,
    a probability, not a density (no dequantization term is needed). ``mean()`` returns
    ``loc`` (the location; the mean differs from it only where the tails are clipped)."""

    def __init__(self, loc, scale):
        self._loc01 = loc
        super().__init__(discretized_logistic(loc, scale), reinterpreted_batch_ndims=3)

    def _log_prob(self, x):
        return super()._log_prob(tf.round(x * (PIXEL_LEVELS - 1)))

    def _mean(self):
        return self._loc01


def kl_per_dimension(loc, scale):
    """KL(N(loc, scale²) ‖ N(0, 1)) for each latent dimension, in nats. [..., D].

    Closed form (Kingma & Welling 2013, appendix B): ½(μ² + σ² − 1 − log σ²).
    """
    return tfd.kl_divergence(tfd.Normal(loc, scale), tfd.Normal(tf.zeros_like(loc), tf.ones_like(scale)))


def mixture_prior(logits, loc, scale) -> tfd.Distribution:
    """A Gaussian-mixture prior p(z) = Σ_m π_m N(z; loc_m, diag(scale_m²)).

    Args:
        logits: float32 [M], π = softmax(logits) (the weights sum to 1).
        loc, scale: float32 [M, D].

    Returns:
        ``tfd.MixtureSameFamily`` with event shape [D] and empty batch shape. The learned
        mixture-of-Gaussians prior, and the VampPrior when loc/scale are the encoder's
        outputs on the pseudo-inputs and the logits are equal (Tomczak & Welling 2018, eq. 9).
    """
    return tfd.MixtureSameFamily(
        mixture_distribution=tfd.Categorical(logits=logits),
        components_distribution=tfd.MultivariateNormalDiag(loc=loc, scale_diag=scale),
    )

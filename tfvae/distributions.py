"""The VAE's three distributions, built with ``tensorflow_probability`` from plain tensors.

* posterior q(z|x) = MultivariateNormalDiag(loc, scale), batch [B], event [D]
  (Kingma & Welling 2013, section 3; the "Gaussian encoder" of appendix C.2).
* prior p(z) = MultivariateNormalDiag(0, I), event [D], or a Gaussian mixture
  (learned mixture of Gaussians, VampPrior: :func:`mixture_prior`).
* likelihood p(x|z) = Independent over the H×W×C pixels of Bernoulli(logits) or
  Normal(loc, scale) (appendix C of Kingma & Welling 2013), event [H, W, C].

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


def likelihood(params: dict, kind: str, sigma=None) -> tfd.Distribution:
    """p(x|z) from decoder outputs.

    Args:
        params: ``{"logits"}`` for ``bernoulli``; ``{"loc"}`` or ``{"loc", "scale"}`` for
            ``gaussian``; each float32 [..., H, W, C].
        kind: ``bernoulli`` or ``gaussian``.
        sigma: the fixed standard deviation when ``params`` has no ``scale``.

    Returns:
        ``tfd.Independent`` with event shape [H, W, C]; ``log_prob(x)`` is in nats per image.
    """
    if kind == "bernoulli":
        base = tfd.Bernoulli(logits=params["logits"], dtype=tf.float32)
    elif kind == "gaussian":
        scale = params["scale"] if "scale" in params else tf.cast(sigma, params["loc"].dtype)
        base = tfd.Normal(loc=params["loc"], scale=scale)
    else:
        raise ValueError(f"unknown likelihood {kind!r}")
    return tfd.Independent(base, reinterpreted_batch_ndims=3)


def likelihood_mean(params: dict, kind: str):
    """E[x|z] in [0, 1]: sigmoid(logits) for Bernoulli, ``loc`` for Gaussian. [..., H, W, C]."""
    if kind == "bernoulli":
        return tf.sigmoid(params["logits"])
    return params["loc"]


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

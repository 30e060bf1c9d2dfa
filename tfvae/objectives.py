"""ELBO and the importance-weighted estimate of log p(x), for any posterior / prior / likelihood.

The functions take ``tfd`` distributions and a callable ``likelihood_fn(z) -> p(x|z)``,
so they serve the VAE and also a linear-Gaussian model whose log p(x) is exact (tests).
Every value is in nats per image.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def elbo_terms(x, posterior, prior, likelihood_fn, eps):
    """Monte-Carlo reconstruction term and analytic KL of the ELBO.

    ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))  (Kingma & Welling 2013, eq. 7 / eq. 10),
    with z = loc + scale · ε, ε ~ N(0, I) (the reparameterization trick, their section 2.4).

    Args:
        x: data [B, ...event].
        posterior: q(z|x), batch [B], event [D]; must expose ``loc`` and ``stddev()``.
        prior: p(z), event [D].
        likelihood_fn: maps z [S, B, D] to p(x|z) with batch [S, B] and x's event shape.
        eps: standard-normal noise [S, B, D] (S Monte-Carlo samples per image).

    Returns:
        (reconstruction, kl): float32 [B] each; reconstruction = −(1/S) Σ_s log p(x|z_s),
        kl = KL(q‖p) from ``tfd.kl_divergence``. −ELBO = reconstruction + kl.
    """
    z = posterior.mean() + posterior.stddev() * eps
    log_lik = likelihood_fn(z).log_prob(x)  # [S, B]
    reconstruction = -tf.reduce_mean(log_lik, axis=0)
    kl = tf.reshape(posterior.kl_divergence(prior), [-1])
    return reconstruction, kl


def log_importance_weights(x, posterior, prior, likelihood_fn, eps):
    """log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x) for z_k = loc + scale · ε_k.

    Args: as :func:`elbo_terms`; ``eps`` [K, B, D].

    Returns:
        (log_w, log_lik): float32 [K, B] each (``log_lik`` = log p(x|z_k)).
    """
    z = posterior.mean() + posterior.stddev() * eps
    log_lik = likelihood_fn(z).log_prob(x)
    log_w = log_lik + prior.log_prob(z) - posterior.log_prob(z)
    return log_w, log_lik


def iw_log_likelihood(log_w, axis: int = 0):
    """Importance-weighted estimate log p(x) ≈ log (1/K) Σ_k w_k (Burda et al. 2015, eq. 8).

    It is a lower bound in expectation, equals the ELBO estimate at K = 1 and rises
    monotonically toward log p(x) as K grows (Burda et al. 2015, theorem 1).

    Args:
        log_w: log importance weights, K along ``axis``; a tf or numpy array.

    Returns:
        The estimate with ``axis`` reduced, in nats.
    """
    if tf.is_tensor(log_w):
        k = tf.cast(tf.shape(log_w)[axis], log_w.dtype)
        return tf.reduce_logsumexp(log_w, axis=axis) - tf.math.log(k)
    from scipy.special import logsumexp

    log_w = np.asarray(log_w, dtype=np.float64)
    return logsumexp(log_w, axis=axis) - math.log(log_w.shape[axis])

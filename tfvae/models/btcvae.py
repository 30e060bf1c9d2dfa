"""β-TCVAE (``--model btcvae``): the ELBO with its total-correlation term weighted by β.

Chen et al. 2018 ("Isolating Sources of Disentanglement in VAEs"), eq. 2, split the ELBO's
KL term averaged over the data into three:

    E_p(n)[KL(q(z|n) ‖ p(z))] = I_q(z; n) + KL(q(z) ‖ Π_d q(z_d)) + Σ_d KL(q(z_d) ‖ p(z_d))
                              = index-code MI + total correlation (TC) + dimension-wise KL,

and the β-TCVAE loss (their eq. 4 with α = γ = 1) is

    loss = reconstruction + MI + β · TC + dimension-wise KL,

so β = 1 gives the (Monte-Carlo) −ELBO exactly. The aggregate posterior q(z) and its
marginals q(z_d) are estimated on each minibatch by minibatch-weighted sampling (their
eq. 5 / appendix C.1), for a batch of M images from a training set of N:

    log q(z_i) ≈ log Σ_j q(z_i | x_j) − log(N·M),
    log q(z_id) ≈ log Σ_j q(z_id | x_j) − log(N·M),

with z_i ~ q(z|x_i) reparameterized. The estimate of TC = E[log q(z) − Σ_d log q(z_d)] is
biased on one minibatch (it can fall below 0); its average over batches is what is trained.
"""

from __future__ import annotations

import math

import tensorflow as tf

from ..config import ModelConfig
from .vae import METRIC_NAMES, VAE, vae_terms

_LOG_2PI = math.log(2 * math.pi)


def _normal_log_prob(z, loc, scale):
    return -0.5 * (((z - loc) / scale) ** 2 + _LOG_2PI) - tf.math.log(scale)


def kl_decomposition(z, loc, scale, dataset_size: int):
    """The terms of Chen et al. 2018, eq. 2, per sample, by minibatch-weighted sampling.

    Args:
        z: samples float32 [S, B, D], z[s, i] ~ q(z | x_i).
        loc, scale: the posteriors' parameters float32 [B, D].
        dataset_size: N, images in the training set (the weight 1/(N·M) of their eq. 5).

    Returns:
        Dict of float32 [S, B] in nats: ``log_qzx`` (log q(z_i|x_i)), ``log_qz`` (log q(z_i)
        estimated), ``log_prod_qzd`` (Σ_d log q(z_id) estimated), ``log_pz`` (log N(z_i; 0, I)),
        ``mi`` = log_qzx − log_qz, ``tc`` = log_qz − log_prod_qzd, ``dim_kl`` = log_prod_qzd −
        log_pz. mi + tc + dim_kl = log q(z|x) − log p(z), the Monte-Carlo KL, exactly.
    """
    b = tf.cast(tf.shape(loc)[0], tf.float32)
    log_nm = tf.math.log(float(dataset_size) * b)
    # pairwise[s, i, j, d] = log q(z_sid | x_j)
    pairwise = _normal_log_prob(z[:, :, None, :], loc[None, None, :, :], scale[None, None, :, :])
    log_qzx = tf.reduce_sum(_normal_log_prob(z, loc, scale), axis=-1)
    log_qz = tf.reduce_logsumexp(tf.reduce_sum(pairwise, axis=-1), axis=2) - log_nm
    log_prod_qzd = tf.reduce_sum(tf.reduce_logsumexp(pairwise, axis=2) - log_nm, axis=-1)
    log_pz = tf.reduce_sum(-0.5 * (z**2 + _LOG_2PI), axis=-1)
    return {"log_qzx": log_qzx, "log_qz": log_qz, "log_prod_qzd": log_prod_qzd, "log_pz": log_pz,
            "mi": log_qzx - log_qz, "tc": log_qz - log_prod_qzd, "dim_kl": log_prod_qzd - log_pz}


def total_correlation(loc, scale, seed: int = 0) -> dict:
    """KL(q(z) ‖ Π_d q(z_d)) of the aggregate posterior of a sample of images, in nats.

    The sample's n images stand for the data: q(z) = (1/n) Σ_j q(z|x_j), and with one draw
    z_i ~ q(z|x_i) per image, log q(z_i) ≈ log Σ_j q(z_i|x_j) − log n and the same per
    dimension (Chen et al. 2018's evaluation, section 4.1, over a sample instead of the whole
    dataset). Unlike the minibatch-weighted training estimate it is 0 when every posterior is
    the same distribution.

    Args:
        loc, scale: posterior parameters float [n, D] (numpy or tf).

    Returns:
        ``tc`` (mean over the sample, nats), ``mi`` (index-code mutual information, nats),
        ``dim_kl`` (Σ_d KL(q(z_d) ‖ N(0, 1)), nats).
    """
    loc = tf.constant(loc, tf.float32)
    scale = tf.constant(scale, tf.float32)
    z = loc + scale * tf.random.stateless_normal(tf.shape(loc), seed=[seed, 0])
    terms = kl_decomposition(z[None], loc, scale, dataset_size=1)  # subtracts log(1 · n): the sample is the data
    return {key: float(tf.reduce_mean(terms[key])) for key in ("tc", "mi", "dim_kl")}


class BetaTCVAE(VAE):
    """β-TCVAE (Chen et al. 2018): the :class:`tfvae.models.VAE`'s networks and distributions
    with the loss reconstruction + MI + β·TC + dimension-wise KL (see the module docstring).

    Args:
        config: model configuration (standard prior; not conditional).
        beta: β, the weight of the total correlation (1: the Monte-Carlo −ELBO).
        dataset_size: N, the training split's size (minibatch-weighted sampling's weight).
        mc_samples, seed: as :class:`tfvae.models.VAE`.

    Besides the VAE's metrics it tracks ``tc``, the minibatch-weighted estimate of the total
    correlation KL(q(z) ‖ Π_d q(z_d)) in nats (batch mean). ``neg_elbo`` and ``kl`` are the
    VAE's (analytic KL), so a β-TCVAE's validation figures compare with any VAE's.
    """

    metric_names = METRIC_NAMES + ("tc",)

    def __init__(self, config: ModelConfig, beta: float = 1.0, dataset_size: int = 1, mc_samples: int = 1, seed=None,
                 **kwargs):
        for unused in ("kl_warmup_steps", "objective", "iw_samples", "free_bits"):  # its own objective
            kwargs.pop(unused, None)
        if config.prior != "standard":
            raise ValueError("a β-TCVAE needs the standard prior N(0, I)")
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be a positive integer, got {dataset_size!r}")
        super().__init__(config, beta=beta, mc_samples=mc_samples, seed=seed, **kwargs)
        self.dataset_size = int(dataset_size)

    def tc_terms(self, x, eps=None, training=False):
        """(q(z|x), reconstruction [S, B], decomposition dict of :func:`kl_decomposition` [S, B])
        on the same reparameterized samples z = μ + σ·ε (ε [B, S, D] given, or drawn)."""
        q = self.posterior(x, training=training)
        eps = self._noise(x, self.mc_samples, eps)
        loc, scale = q.mean(), q.stddev()
        z = loc + scale * eps
        reconstruction = -self.likelihood(z, training=training).log_prob(x)
        return q, reconstruction, kl_decomposition(z, loc, scale, self.dataset_size)

    def losses_for(self, x, labels=None, eps=None, training=False, weight=None):
        """The named terms, batch means in nats: ``loss`` = reconstruction + MI + β·TC +
        dimension-wise KL (Chen et al. 2018, eq. 4, α = γ = 1); ``kl`` the analytic
        KL(q(z|x) ‖ p(z)); ``neg_elbo``, ``reconstruction``, ``kl_weight`` (= β) as the VAE's;
        ``tc`` the minibatch-weighted total correlation."""
        weight = tf.constant(self.beta if weight is None else weight, tf.float32)
        q, reconstruction, terms = self.tc_terms(x, eps, training=training)
        loss = tf.reduce_mean(reconstruction + terms["mi"] + weight * terms["tc"] + terms["dim_kl"])
        kl = tf.reduce_mean(q.kl_divergence(self.prior()))
        return {**vae_terms(loss, tf.reduce_mean(reconstruction), kl, weight), "tc": tf.reduce_mean(terms["tc"])}

    def validation_weight(self):
        return None

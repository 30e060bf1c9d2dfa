"""Exact maths of the objectives: closed-form KL, and the importance-weighted bound on a
linear-Gaussian model (probabilistic PCA, Tipping & Bishop 1999) whose log p(x) is exact."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import distributions as dist
from tfvae.objectives import elbo_terms, iw_log_likelihood, log_importance_weights

tfd = tfp.distributions


def test_analytic_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    loc = rng.normal(size=(4, 3)).astype(np.float64)
    scale = rng.uniform(0.3, 2.0, size=(4, 3))
    q, p = dist.posterior(loc, scale), dist.prior(3, tf.float64)
    analytic = q.kl_divergence(p).numpy()
    z = q.sample(200_000, seed=1)
    log_ratio = (q.log_prob(z) - p.log_prob(z)).numpy()  # [S, B]
    mc, stderr = log_ratio.mean(0), log_ratio.std(0) / np.sqrt(len(log_ratio))
    assert np.all(np.abs(mc - analytic) < 5 * stderr + 1e-6), (mc, analytic, stderr)
    # ... and the closed form ½(μ² + σ² − 1 − log σ²) summed over dimensions.
    closed = 0.5 * (loc**2 + scale**2 - 1 - np.log(scale**2))
    np.testing.assert_allclose(dist.kl_per_dimension(loc, scale).numpy(), closed, rtol=1e-10)
    np.testing.assert_allclose(analytic, closed.sum(-1), rtol=1e-10)


class PPCA:
    """x = W z + μ + σ ε with orthogonal columns of W, so the exact posterior is diagonal.

    p(x) = N(μ, W Wᵀ + σ² I) (Tipping & Bishop 1999, eq. 6); posterior
    p(z|x) = N(M⁻¹ Wᵀ (x − μ), σ² M⁻¹), M = Wᵀ W + σ² I (their eq. 7).
    """

    def __init__(self, n=6, d=2, sigma=0.5, seed=0):
        rng = np.random.default_rng(seed)
        basis, _ = np.linalg.qr(rng.normal(size=(n, d)))
        self.W = basis * np.array([2.0, 1.2])[:d]
        self.mu = rng.normal(size=n)
        self.sigma, self.d = sigma, d
        self.marginal = tfd.MultivariateNormalFullCovariance(self.mu, self.W @ self.W.T + sigma**2 * np.eye(n))
        self.x = self.marginal.sample(300, seed=3).numpy()

    def likelihood_fn(self, z):  # z [K, B, d] -> batch [K, B], event [n]
        return tfd.Independent(tfd.Normal(tf.einsum("kbd,nd->kbn", z, self.W) + self.mu, self.sigma), 1)

    def exact_posterior(self):
        m = self.W.T @ self.W + self.sigma**2 * np.eye(self.d)
        mean = (self.x - self.mu) @ self.W @ np.linalg.inv(m).T
        std = np.sqrt(np.diag(self.sigma**2 * np.linalg.inv(m)))
        return dist.posterior(mean, np.broadcast_to(std, mean.shape))

    def iw(self, q, k, seed):
        eps = np.random.default_rng(seed).standard_normal((k, len(self.x), self.d))
        log_w, _ = log_importance_weights(self.x, q, dist.prior(self.d, tf.float64), self.likelihood_fn, eps)
        return iw_log_likelihood(log_w.numpy())


@pytest.fixture(scope="module")
def ppca():
    return PPCA()


def test_iw_estimate_is_exact_with_the_true_posterior(ppca):
    exact = ppca.marginal.log_prob(ppca.x).numpy()
    for k in (1, 10):
        np.testing.assert_allclose(ppca.iw(ppca.exact_posterior(), k, seed=k), exact, atol=1e-8)


def test_iw_estimate_rises_toward_exact_log_likelihood(ppca):
    exact = ppca.marginal.log_prob(ppca.x).numpy().mean()
    q_true = ppca.exact_posterior()
    q = dist.posterior(q_true.mean() + 0.4, q_true.stddev() * 1.8)  # a poor posterior
    eps = np.random.default_rng(7).standard_normal((64, len(ppca.x), ppca.d))
    rec, kl = elbo_terms(ppca.x, q, dist.prior(ppca.d, tf.float64), ppca.likelihood_fn, eps)
    elbo = -(rec + kl).numpy().mean()
    estimates = {k: np.mean([ppca.iw(q, k, seed=s).mean() for s in range(3)]) for k in (1, 10, 100, 2000)}
    assert elbo < exact - 0.2  # the poor posterior leaves a visible gap
    # The mean log weight is a Monte-Carlo ELBO; it agrees with the analytic-KL ELBO.
    log_w, _ = log_importance_weights(ppca.x, q, dist.prior(ppca.d, tf.float64), ppca.likelihood_fn, eps)
    assert abs(log_w.numpy().mean() - elbo) < 0.1
    ks = sorted(estimates)
    assert all(estimates[a] < estimates[b] for a, b in zip(ks, ks[1:])), estimates
    assert all(estimates[k] >= elbo - 0.1 for k in ks)
    assert estimates[2000] <= exact + 0.02
    assert exact - estimates[2000] < 0.05, (exact, estimates)


def test_iw_log_likelihood_tensor_and_numpy_agree():
    log_w = np.random.default_rng(0).normal(size=(50, 4)) * 30
    np.testing.assert_allclose(iw_log_likelihood(tf.constant(log_w)).numpy(), iw_log_likelihood(log_w), rtol=1e-12)
    np.testing.assert_allclose(iw_log_likelihood(log_w[:1]), log_w[0])

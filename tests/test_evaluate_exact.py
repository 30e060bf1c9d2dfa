"""The production ``evaluate`` path, through the CLI, against an exact log-likelihood.

A VAE with a one-dimensional latent has an exact marginal likelihood by quadrature:
log p(x) = log ∫ p(x|z) N(z; 0, 1) dz, a Riemann sum on a fine grid (the integrand is
smooth, so the sum converges faster than any power of the step). The importance-weighted
estimate that ``python cli.py evaluate`` writes must agree with it within three standard
errors of the per-image difference; the −ELBO (what a log-mean-exp replaced by a mean
would report) and a sign error must both be far outside that band.
"""

import json

import numpy as np
import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow
N_IMAGES = 40


@pytest.fixture(scope="module")
def one_d_run(tmp_path_factory, tfds_dir):
    run_dir = tmp_path_factory.mktemp("latent1") / "run"
    result = run_cli("train", "--model", "vae", "--dataset", "mnist", "--arch", "mlp", "--hidden-units", "64", "--latent-dim", 1,
                     "--max-train-examples", 3000, "--validation-size", 500, "--epochs", 2, "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


def exact_log_likelihood(run_dir, n):
    """log p(x) per test image [n] (nats) by quadrature over z in [-10, 10], step 1e-3."""
    import tensorflow as tf
    from scipy.special import logsumexp

    from tfvae.data import binarize_fixed, load_dataset
    from tfvae.rundir import load_model

    model, cfg = load_model(run_dir)
    x = binarize_fixed(load_dataset(cfg.data, need_test=True).test[:n], "dynamic", cfg.data.binarization_seed)
    z = np.arange(-10.0, 10.0 + 1e-9, 1e-3, dtype=np.float64)
    log_prior = -0.5 * z ** 2 - 0.5 * np.log(2 * np.pi)
    logits = model.decoder(tf.constant(z[:, None], tf.float32), training=False)["logits"].numpy().astype(np.float64)
    logits = logits.reshape(len(z), -1)  # [G, P]
    flat = x.reshape(n, -1).astype(np.float64)  # [n, P]
    # log Bernoulli(x | sigmoid(l)) = x·l − softplus(l), summed over pixels: [n, G]
    log_lik = flat @ logits.T - np.logaddexp(0.0, logits).sum(axis=1)[None, :]
    return logsumexp(log_lik + log_prior[None, :], axis=1) + np.log(1e-3), x


def test_cli_evaluate_matches_the_exact_likelihood_of_a_one_dimensional_latent(one_d_run):
    from tfvae.evaluate import evaluate_images
    from tfvae.rundir import load_model

    result = run_cli("evaluate", one_d_run, "--iw-samples", 1000, "--max-examples", N_IMAGES)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((one_d_run / "eval.json").read_text())
    m = report["metrics"]
    exact, x = exact_log_likelihood(one_d_run, N_IMAGES)
    exact_nll = -exact
    # The per-image estimates behind the CLI's mean (same function, seed and keys).
    model, _ = load_model(one_d_run)
    per_image = evaluate_images(model, x, iw_samples=1000, seed=0, progress=False)["nll"]
    assert abs(per_image.mean() - m["nll"]) < 1e-6, "the CLI's NLL is the mean of these per-image estimates"
    diff = per_image - exact_nll
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    band = 3 * se + 1e-3
    print(f"exact NLL {exact_nll.mean():.4f}, CLI evaluate NLL {m['nll']:.4f} (K=1000), difference "
          f"{diff.mean():+.4f} ± {se:.4f} nats; −ELBO {m['neg_elbo']:.2f}")
    assert abs(diff.mean()) < band
    assert np.all(exact_nll > 0) and m["nll"] > 0, "binary data: p(x) ≤ 1, so NLL ≥ 0"
    assert m["nll"] <= m["neg_elbo"] + 1e-6, "the IW estimate is at least the ELBO"
    # A log-mean-exp replaced by a mean reports −ELBO; a sign error reports −NLL: both far outside the band.
    assert m["neg_elbo"] - exact_nll.mean() > 20 * band
    assert abs(-m["nll"] - exact_nll.mean()) > 20 * band


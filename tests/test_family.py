"""The model family (issue 4): vae, ae, cvae, pca, β, the IWAE objective, traversal,
the classifier Fréchet distance and ``compare``."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import multivariate_normal

from conftest import run_cli
from tfvae.config import ModelConfig, RunConfig
from tfvae.models import Autoencoder, build_model
from tfvae.objectives import iw_log_likelihood
from tfvae.models.pca import PPCA, fit_ppca
from tfvae.quality import build_classifier, frechet_distance, sample_quality

SHAPE = (28, 28, 1)


def family_config(model, latent=4, **extra):
    cfg = RunConfig(model=ModelConfig(model=model, latent_dim=latent, hidden_units=[32], conv_filters=[8, 16],
                                      image_shape=list(SHAPE), num_classes=10 if model == "cvae" else 0, **extra))
    return cfg.resolved().model


def binary_images(n, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.uniform(0.05, 0.95, size=(1,) + SHAPE)
    return (rng.uniform(size=(n,) + SHAPE) < means).astype(np.float32)


def batches(model, x, samples=1):
    n = len(x)
    eps = np.random.default_rng(1).standard_normal((n, samples, model.latent_dim)).astype(np.float32)
    if model.conditional:
        y = np.eye(10, dtype=np.float32)[np.arange(n) % 10]
        return tf.data.Dataset.from_tensor_slices((x, eps, y)).batch(16)
    if isinstance(model, Autoencoder):
        return tf.data.Dataset.from_tensor_slices(x).batch(16)
    return tf.data.Dataset.from_tensor_slices((x, eps)).batch(16)


@pytest.mark.parametrize("kind,extra,train", [
    ("vae", {}, {}),
    ("ae", {}, {}),
    ("cvae", {}, {}),
    ("vae", {"prior": "mog", "prior_components": 3}, {}),
    ("vae", {"prior": "vamp", "prior_components": 4}, {}),
    ("vae", {}, {"objective": "iwae", "iw_samples": 3}),
    ("cvae", {}, {"objective": "iwae", "iw_samples": 2}),
])
def test_each_model_trains_and_round_trips(kind, extra, train, tmp_path):
    cfg = family_config(kind, **extra)
    model = build_model(cfg, seed=0, **train)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = binary_images(64)
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(batches(model, x, train.get("iw_samples", 1)), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    path = tmp_path / "m.weights.h5"
    model.save_weights(str(path))
    again = build_model(cfg, seed=1, **train)
    again.load_weights(str(path))
    z = np.random.default_rng(2).standard_normal((5, cfg.latent_dim)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[[1, 2, 3, 4, 5]] if model.conditional else None
    np.testing.assert_allclose(np.asarray(model.decode_mean(z, y)), np.asarray(again.decode_mean(z, y)), atol=1e-6)
    np.testing.assert_allclose(model.sample_prior(7, seed=3), again.sample_prior(7, seed=3), atol=1e-5)


def test_autoencoder_loss_is_reconstruction_only():
    model = build_model(family_config("ae"), seed=0)
    x = binary_images(8)
    terms = model.losses_for(tf.constant(x))
    loss, reconstruction = terms["loss"], terms["reconstruction"]
    assert set(terms) == set(model.metric_names) == {"loss", "reconstruction"}
    z = model.encoder(x)["loc"]
    p = tf.sigmoid(model.decoder(z)["logits"]).numpy().astype(np.float64)
    expected = -np.mean(np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=(1, 2, 3)))
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert float(loss) == float(reconstruction)


def test_cvae_label_changes_the_samples_for_the_same_noise():
    model = build_model(family_config("cvae"), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(batches(model, binary_images(64)), epochs=2, verbose=0)
    z = model.sample_prior(6, seed=0)
    a = np.asarray(model.decode_mean(z, np.eye(10, dtype=np.float32)[[3] * 6]))
    b = np.asarray(model.decode_mean(z, np.eye(10, dtype=np.float32)[[7] * 6]))
    again = np.asarray(model.decode_mean(z, np.eye(10, dtype=np.float32)[[3] * 6]))
    np.testing.assert_array_equal(a, again)
    assert np.mean(np.abs(a - b)) > 1e-4


def test_iwae_bound_equals_elbo_at_k1_and_grows_with_k():
    model = build_model(family_config("vae", latent=4), seed=0, objective="iwae", iw_samples=1)
    x = tf.constant(binary_images(200, seed=5))
    eps = np.random.default_rng(0).standard_normal((200, 1, 4)).astype(np.float32)
    iw_loss = model.losses_for(x, eps=tf.constant(eps))["loss"]
    recon, kl = model.elbo_terms(x, eps=tf.constant(eps))
    # Same samples: −IWAE_1 = reconstruction + log q − log p, the ELBO with a Monte-Carlo KL,
    # whose expectation is the analytic KL; on one sample they differ, so compare per-sample
    # log weights directly.
    q = model.posterior(x)
    z = q.mean() + q.stddev() * tf.transpose(eps, [1, 0, 2])
    log_w = model.likelihood(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)
    assert float(iw_loss) == pytest.approx(-float(tf.reduce_mean(log_w)), rel=1e-5)
    assert float(-tf.reduce_mean(log_w)) == pytest.approx(float(tf.reduce_mean(recon + kl)), rel=0.05)
    bounds = []
    for k in (1, 5, 50):
        e = np.random.default_rng(k).standard_normal((k, 200, 4)).astype(np.float32)
        z = q.mean() + q.stddev() * e
        lw = model.likelihood(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)
        bounds.append(float(tf.reduce_mean(iw_log_likelihood(lw, axis=0))))
    assert bounds[0] < bounds[1] < bounds[2]


def test_ppca_log_likelihood_matches_closed_form():
    rng = np.random.default_rng(0)
    d, q = 12, 3
    w_true = rng.normal(size=(d, q))
    x = rng.normal(size=(400, q)) @ w_true.T + 0.3 * rng.normal(size=(400, d)) + 0.5
    cfg = ModelConfig(model="pca", latent_dim=q, image_shape=[3, 4, 1])
    model = fit_ppca(x.reshape(400, 3, 4, 1), q, cfg)
    cov = model.weights @ model.weights.T + model.noise_variance * np.eye(d)
    expected = multivariate_normal(model.mean, cov).logpdf(x)
    np.testing.assert_allclose(model.log_prob(x.reshape(400, 3, 4, 1)), expected, rtol=1e-8)
    # Maximum likelihood: σ² is the mean discarded eigenvalue of the sample covariance.
    eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    assert model.noise_variance == pytest.approx(eig[q:].mean(), rel=1e-6)
    # The posterior mean maps a reconstruction back near the data.
    recon = model.mean + model.encode_mean(x.reshape(400, 3, 4, 1)).astype(np.float64) @ model.weights.T
    assert np.mean((recon - x) ** 2) < np.mean((x - x.mean(0)) ** 2)


def test_ppca_is_the_linear_baseline():
    model = PPCA(np.zeros(4), np.eye(4)[:, :2], 0.5, ModelConfig(model="pca", latent_dim=2, image_shape=[2, 2, 1]))
    assert model.latent_dim == 2 and model.sample_prior(3).shape == (3, 2)
    assert model.decode_mean(np.array([[5.0, -5.0]])).reshape(-1).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_frechet_distance_closed_form_and_self():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = rng.normal(size=(5000, 3)) * 2.0 + 1.0  # N(1, 4I) vs N(0, I): 3·1 + 3·(1 + 4 − 2·2) = 6
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    with pytest.raises(ValueError):
        frechet_distance(a[:1], b)


@pytest.mark.slow
def test_classifier_distance_grows_with_noise(tfds_dir, tmp_path):
    from tfvae.config import DataConfig
    from tfvae.data import load_dataset
    from tfvae.quality import get_classifier

    data = load_dataset(DataConfig(dataset="mnist", validation_size=1000, max_train_examples=4000), need_test=True)
    classifier = get_classifier(data, "mnist", tmp_path, say=lambda m: None)
    assert (tmp_path / ".classifiers" / "mnist" / "info.json").is_file()
    test = data.test[:2000].astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    scores = [sample_quality(classifier, np.clip(test + s * rng.normal(size=test.shape), 0, 1), test)["fd_classifier"]
              for s in (0.0, 0.2, 0.5)]
    assert scores[0] < 1e-6 < scores[1] < scores[2]
    # Cached: a second call loads the same model instead of training.
    again = get_classifier(data, "mnist", tmp_path, say=lambda m: pytest.fail("retrained"))
    assert again.info == classifier.info


def test_untrained_classifier_features_shape():
    model = build_classifier(SHAPE, 10)
    assert model.get_layer("features").output.shape[-1] == 128


# ---- CLI on real MNIST slices --------------------------------------------------------------

def train_slice(tmp_path_factory, name, *args):
    run_dir = tmp_path_factory.mktemp(name) / "run"
    result = run_cli("train", "--model", "vae", "--dataset", "mnist", "--max-train-examples", 2000, "--validation-size", 500,
                     "--epochs", 1, "--latent-dim", 4, "--run-dir", run_dir, *args)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory, tfds_dir):
    return {kind: train_slice(tmp_path_factory, kind, "--model", kind, *extra) for kind, extra in
            [("vae", ("--objective", "iwae", "--train-iw-samples", "2")), ("ae", ()), ("cvae", ()), ("pca", ())]}


def test_cli_family_runs(family_runs, tmp_path):
    cvae = family_runs["cvae"]
    assert json.loads((cvae / "config.json").read_text())["model"]["num_classes"] == 10
    result = run_cli("sample", cvae, "--label", 7, "-n", 4, "--out", tmp_path / "seven.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "seven.png").stat().st_size > 0
    result = run_cli("sample", family_runs["ae"], "--source", "fitted", "--out", tmp_path / "ae.png")
    assert result.returncode == 0, result.stderr
    assert (family_runs["ae"] / "code_gaussian.npz").is_file()
    result = run_cli("traverse", family_runs["vae"], "--dims", 3, "--steps", 5, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "traverse.json").read_text())
    assert len(info["dimensions"]) == 3 and info["values"][0] == -3.0
    assert (family_runs["pca"] / "pca.npz").is_file()
    from test_cli import assert_one_line_error

    assert_one_line_error(run_cli("sample", cvae, "--label", 10, "--out", tmp_path / "x.png"), "--label", "0..9")
    assert_one_line_error(run_cli("sample", family_runs["ae"], "--label", 1, "--out", tmp_path / "x.png"),
                          "--label", "cvae")
    assert_one_line_error(run_cli("evaluate", family_runs["ae"]), "compare")
    result = run_cli("evaluate", family_runs["pca"], "--max-examples", 500)
    assert result.returncode == 0 and "log-density" in result.stdout, result.stderr
    report = json.loads((family_runs["pca"] / "eval.json").read_text())
    assert report["protocol"]["num_images"] == 500 and np.isfinite(report["metrics"]["log_density"])
    assert_one_line_error(run_cli("export", family_runs["cvae"], "--out", tmp_path / "e"), "export")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "e").exists()


def test_cli_compare(family_runs, tmp_path):
    runs = [family_runs[k] for k in ("pca", "ae", "vae", "cvae")]
    out = tmp_path / "cmp"
    evals = {r: (r / "eval.json").read_bytes() if (r / "eval.json").exists() else None for r in runs}
    result = run_cli("compare", *runs, "--out", out, "-k", 5, "--max-examples", 200, "--samples", 300, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    # compare never writes or replaces a run's eval.json (it computes what does not match).
    assert evals == {r: (r / "eval.json").read_bytes() if (r / "eval.json").exists() else None for r in runs}
    import csv

    with open(out / "compare.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 5  # the autoencoder has two sampling rows
    pca_row, vae_row = rows[0], rows[3]
    assert pca_row["model"] == "pca" and pca_row["nll"] == ""
    assert float(vae_row["nll"]) < float(vae_row["neg_elbo"]) and vae_row["iw_samples"] == "5"
    assert (out / "compare.png").stat().st_size > 0 and "fd_classifier" in (out / "compare.md").read_text()
    # Nothing is overwritten without --force.
    again = run_cli("compare", runs[0], "--out", out, "--samples", 10)
    assert again.returncode == 2 and "already exist" in again.stderr

"""The hierarchical VAE (``--model hvae``): the loss against a hand computation, the KL of
each group, the importance-weighted bound, and the decoder as a function of the noise."""

import keras
import numpy as np
from scipy.stats import norm
import pytest
import tensorflow as tf

from tfvae.config import ModelConfig
from tfvae.evaluate import evaluate_images
from tfvae.models.hvae import group_slices
from tfvae.models import build_model

SHAPE = [8, 8, 1]


def tiny(groups=(3, 2), arch="mlp", objective="elbo", free_bits=0.0, seed=0):
    keras.utils.set_random_seed(seed)  # the weights' initialization
    cfg = ModelConfig(model="hvae", arch=arch, latent_dim=sum(groups), group_dims=list(groups), hvae_width=16,
                      hidden_units=[24], conv_filters=[4, 8], res_blocks=1, image_shape=SHAPE)
    return build_model(cfg, objective=objective, iw_samples=4, free_bits=free_bits, seed=seed)


def images(n=6, seed=0):
    return (np.random.default_rng(seed).random((n, *SHAPE)) > 0.5).astype(np.float32)


def dense(layer, x):
    w, b = (v.numpy().astype(np.float64) for v in layer.weights)
    return x @ w + b


def softplus(x):
    return np.logaddexp(0.0, x)


def hand_loss(model, x, eps, with_densities=False):
    """The ELBO's two terms for an mlp-trunk 2-group model, from the layers' weights in
    numpy float64: reconstruction −log p(x|z) and each group's Gaussian KL (closed form);
    with ``with_densities`` also each group's log p(z_l|z_<l) and log q(z_l|x, z_<l) at the
    sampled z (scipy's normal log-density), [L, B] each."""
    cells, floor = model.cells, model.config.scale_floor
    feats = [f.numpy().astype(np.float64) for f in model.bottom_up(x)]
    h = np.broadcast_to(cells.h0.value.numpy().astype(np.float64), (len(x), cells.width))
    kls, log_p, log_q = [], [], []
    for i, (lo, hi) in enumerate(group_slices(model.group_dims)):
        d = hi - lo
        if i == 0:
            p_loc, p_scale = np.zeros((len(x), d)), np.ones((len(x), d))
        else:
            out = dense(cells.prior[i], h)
            p_loc, p_scale = out[:, :d], softplus(out[:, d:]) + floor
        out = dense(cells.posterior[i], np.concatenate([h, feats[i]], -1))
        q_loc, q_scale = p_loc + out[:, :d], p_scale * (softplus(out[:, d:]) + floor)
        z = q_loc + q_scale * eps[:, lo:hi]
        log_p.append(norm.logpdf(z, p_loc, p_scale).sum(axis=1))  # log p(z_l | z_<l)
        log_q.append(norm.logpdf(z, q_loc, q_scale).sum(axis=1))  # log q(z_l | x, z_<l)
        kls.append(np.sum(np.log(p_scale / q_scale) + (q_scale ** 2 + (q_loc - p_loc) ** 2) / (2 * p_scale ** 2) - 0.5,
                          axis=1))
        h = h + dense(cells.merge[i], z)
        a, b = cells.block[i]
        h = h + dense(b, np.maximum(dense(a, np.maximum(h, 0)), 0))
    logits = model.output_net(tf.constant(h, tf.float32))["logits"].numpy().astype(np.float64).reshape(len(x), -1)
    flat = x.reshape(len(x), -1)
    reconstruction = -np.sum(flat * logits - np.logaddexp(0.0, logits), axis=1)
    if with_densities:
        return reconstruction, np.stack(kls), np.stack(log_p), np.stack(log_q)
    return reconstruction, np.stack(kls)


def test_loss_is_reconstruction_plus_the_groups_kls_computed_by_hand():
    model = tiny()
    x = images()
    eps = np.random.default_rng(1).standard_normal((len(x), 1, model.latent_dim)).astype(np.float32)
    terms = model.losses_for(tf.constant(x), eps=tf.constant(eps))
    loss, reconstruction, kl = terms["loss"], terms["reconstruction"], terms["kl"]
    rec_hand, kls_hand = hand_loss(model, x, eps[:, 0].astype(np.float64))
    assert float(reconstruction) == pytest.approx(rec_hand.mean(), rel=1e-5)
    assert float(kl) == pytest.approx(kls_hand.sum(axis=0).mean(), rel=1e-5)
    assert float(loss) == pytest.approx(rec_hand.mean() + kls_hand.sum(axis=0).mean(), rel=1e-5)
    out = model.hierarchy(tf.constant(x), tf.constant(eps.transpose(1, 0, 2)))
    np.testing.assert_allclose(out["kl"].numpy()[:, 0], kls_hand, rtol=1e-4, atol=1e-5)
    _, _, log_p, log_q = hand_loss(model, x, eps[:, 0].astype(np.float64), with_densities=True)
    np.testing.assert_allclose(out["log_p"].numpy()[0], log_p.sum(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out["log_q"].numpy()[0], log_q.sum(axis=0), rtol=1e-4, atol=1e-4)
    assert (out["kl"].numpy() >= -1e-6).all()  # every group's KL is a KL


def test_free_bits_floor_each_groups_kl():
    model = tiny(free_bits=50.0)  # a KL floor far above an untrained group's KL
    x = images()
    eps = np.zeros((len(x), 1, model.latent_dim), np.float32)
    terms = model.losses_for(tf.constant(x), eps=tf.constant(eps))
    loss, reconstruction, kl = terms["loss"], terms["reconstruction"], terms["kl"]
    assert float(loss) == pytest.approx(float(reconstruction) + 50.0 * model.latent_dim, rel=1e-5)
    assert float(kl) < 50.0 * model.latent_dim


def test_importance_weighted_bound_is_above_the_elbo_and_rises_with_k():
    model = tiny(groups=(2, 2, 2))
    x = images(40)
    result = {k: evaluate_images(model, x, iw_samples=k, progress=False) for k in (1, 10, 100)}
    np.testing.assert_allclose(result[1]["nll"], result[1]["neg_elbo"], rtol=1e-4)  # K = 1: the ELBO itself
    assert result[10]["nll"].mean() < result[1]["neg_elbo"].mean()
    assert result[100]["nll"].mean() < result[10]["nll"].mean()


def test_decoder_is_the_prior_pass_of_the_noise():
    """decoder(ε) equals the hierarchy's prior pass z_l = μ^p + σ^p ε_l, and the top group's
    prior is N(0, I): changing only the lowest group's noise leaves the upper groups alone."""
    model = tiny(arch="conv")
    eps = np.random.default_rng(2).standard_normal((5, model.latent_dim)).astype(np.float32)
    out = model.decoder(eps)["logits"].numpy()
    h = model.cells.prior_pass(tf.constant(eps))
    np.testing.assert_allclose(model.output_net(h)["logits"].numpy(), out, rtol=1e-5, atol=1e-5)
    again = model.decoder(eps)["logits"].numpy()
    np.testing.assert_array_equal(out, again)


def test_objective_iwae_at_k_samples_matches_the_evaluated_bound():
    model = tiny(objective="iwae")
    x = images(3)
    eps = np.random.default_rng(3).standard_normal((3, 4, model.latent_dim)).astype(np.float32)
    loss = model.losses_for(tf.constant(x), eps=tf.constant(eps), weight=1.0)["loss"]
    log_w = model.log_weights(tf.constant(x), tf.constant(eps.transpose(1, 0, 2)))[0].numpy().astype(np.float64)
    expected = -(np.logaddexp.reduce(log_w, axis=0) - np.log(4)).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # Independently of hierarchy(): each sample's log w = log p(x|z) + Σ_l [log p(z_l|z_<l) −
    # log q(z_l|x, z_<l)], the densities computed by hand from the layers' weights.
    hand = np.zeros((4, 3))
    for k in range(4):
        rec, _, log_p, log_q = hand_loss(model, x, eps[:, k].astype(np.float64), with_densities=True)
        hand[k] = -rec + log_p.sum(axis=0) - log_q.sum(axis=0)
    np.testing.assert_allclose(log_w, hand, rtol=1e-4, atol=1e-3)
    assert float(loss) == pytest.approx(-(np.logaddexp.reduce(hand, axis=0) - np.log(4)).mean(), rel=1e-4)


def test_weights_survive_a_save_and_load(tmp_path):
    model = tiny(arch="resnet")
    path = tmp_path / "w.weights.h5"
    model.save_weights(str(path))
    other = tiny(arch="resnet", seed=7)
    eps = np.random.default_rng(4).standard_normal((2, model.latent_dim)).astype(np.float32)
    assert not np.allclose(model.decoder(eps)["logits"], other.decoder(eps)["logits"])
    other.load_weights(str(path))
    np.testing.assert_array_equal(model.decoder(eps)["logits"].numpy(), other.decoder(eps)["logits"].numpy())
    x = images(2)
    np.testing.assert_array_equal(model.encoder(x)["loc"].numpy(), other.encoder(x)["loc"].numpy())


def test_exported_decoder_reproduces_the_model_for_the_same_noise(tmp_path):
    """SavedModel (``serving_default``, ``sample`` and ``sample_groups``) and TFLite with
    builtin ops give the in-memory decoder's output for the same noise within 1e-5."""
    from ai_edge_litert.interpreter import Interpreter

    from tfvae.export import _decoder_archive, convert_tflite

    model = tiny(groups=(3, 2, 4), arch="conv")
    _decoder_archive(model).write_out(str(tmp_path / "decoder"), verbose=False)
    eps = np.random.default_rng(5).standard_normal((4, model.latent_dim)).astype(np.float32)
    expected = model.output_net(model.cells.prior_pass(tf.constant(eps)))["logits"].numpy()
    loaded = tf.saved_model.load(str(tmp_path / "decoder"))
    np.testing.assert_allclose(loaded.signatures["serving_default"](z=eps)["logits"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(loaded.signatures["sample"](eps=eps)["logits"].numpy(), expected, atol=1e-5)
    groups = {f"eps_{i + 1}": eps[:, a:b] for i, (a, b) in enumerate(group_slices(model.group_dims))}
    np.testing.assert_allclose(loaded.signatures["sample_groups"](**groups)["logits"].numpy(), expected, atol=1e-5)
    interpreter = Interpreter(model_content=convert_tflite(tmp_path / "decoder"))
    runner = interpreter.get_signature_runner("serving_default")
    np.testing.assert_allclose(runner(z=eps)["logits"], expected, atol=1e-5)


@pytest.mark.parametrize("shape,likelihood,sigma", [((28, 28, 1), "bernoulli", 0.1), ((32, 32, 3), "logistic", 0.1),
                                                    ((30, 26, 1), "gaussian", "learned")])
def test_shapes_for_every_likelihood(shape, likelihood, sigma):
    cfg = ModelConfig(model="hvae", arch="resnet", latent_dim=5, group_dims=[2, 3], hvae_width=8, hidden_units=[16],
                      conv_filters=[4, 8], res_blocks=1, likelihood=likelihood, sigma=sigma, image_shape=list(shape))
    model = build_model(cfg, seed=0)
    x = tf.random.uniform((3,) + shape)
    enc = model.encoder(x)
    assert enc["loc"].shape == (3, 5) and np.all(enc["scale"].numpy() > 0)
    assert all(v.shape == (3,) + shape for v in model.decoder(enc["loc"]).values())
    mean = model.decode_mean(enc["loc"]).numpy()
    assert mean.min() >= 0 and mean.max() <= 1
    rec, kl = model.elbo_terms(x, samples=2)
    assert rec.shape == (3,) and kl.shape == (3,) and np.all(kl.numpy() >= 0)


@pytest.mark.slow
def test_real_mnist_run_learns_and_every_command_reads_it(tfds_dir, tmp_path):
    """A short real-MNIST hvae run: validation −ELBO falls; evaluate reports each group's KL
    and active units; traverse, sample, export (TFLite) and generate read it, and so do the
    commands of codes (classify, anomaly, inpaint, interpolate, latent: the posterior of the
    groups, issue 28)."""
    import csv
    import json

    from conftest import run_cli

    run = tmp_path / "run"
    result = run_cli("train", "--dataset", "mnist", "--model", "hvae", "--group-dims", "4,8", "--hvae-width", "64",
                     "--max-train-examples", 2000, "--validation-size", 500, "--epochs", 3, "--run-dir", run,
                     "--no-tensorboard")
    assert result.returncode == 0, result.stderr[-2000:]
    val = [float(r["val_neg_elbo"]) for r in csv.DictReader((run / "metrics.csv").open())]
    assert val[-1] < val[0]
    result = run_cli("evaluate", run, "--iw-samples", 20, "--max-examples", 100)
    assert result.returncode == 0, result.stderr[-2000:]
    m = json.loads((run / "eval.json").read_text())["metrics"]
    assert m["group_dims"] == [4, 8] and len(m["kl_per_group"]) == 2 and min(m["kl_per_group"]) >= 0
    assert sum(m["active_units_per_group"]) == m["active_units"] and m["nll"] <= m["neg_elbo"]
    assert "KL per group" in result.stdout
    for args in (["traverse", run, "--dims", 3], ["sample", run, "-n", 4, "--out", tmp_path / "s.png"],
                 ["export", run, "--tflite", "--out", tmp_path / "exported", "--name", "h"],
                 ["generate", tmp_path / "exported" / "h", "-n", 4, "--out", tmp_path / "g.png"],
                 ["classify", run, "--labels", 100, "--seeds", 1],
                 ["anomaly", run, "--corrupt", "noise", "--max-examples", 100, "--iw-samples", 2],
                 ["inpaint", run, "-n", 2, "--steps", 2], ["interpolate", run, "--from", 0, "--to", 1],
                 ["latent", run]):
        result = run_cli(*args)
        assert result.returncode == 0, (args[0], result.stderr[-2000:])
    assert json.loads((run / "figures" / "traverse.json").read_text())["dimensions"][0] < 4  # the top group
    rows = json.loads((run / "figures" / "classify.json").read_text())["rows"]
    assert {r["features"] for r in rows} >= {"encoder mean", "raw pixels"}
    assert json.loads((run / "figures" / "anomaly_corrupt-noise.json").read_text())  # written, not refused

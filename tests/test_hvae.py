"""The hierarchical VAE (``--model hvae``): the loss against a hand computation, the KL of
each group, the importance-weighted bound, and the decoder as a function of the noise."""

import keras
import numpy as np
from scipy.stats import norm
import pytest
import tensorflow as tf

from tfvae.config import ModelConfig, latent_group_sizes
from tfvae.evaluate import evaluate_images
from tfvae.models.hvae import group_slices
from tfvae.models import build_model

SHAPE = [8, 8, 1]


MAPS = [2, 1]  # latent maps of 2 channels at 2×2 and 1 channel at 4×4 (conv_filters 4, 8 on 8×8 images)


def tiny(groups=(3, 2), arch="mlp", objective="elbo", free_bits=0.0, seed=0, maps=None, flows=0):
    keras.utils.set_random_seed(seed)  # the weights' initialization
    cfg = ModelConfig(model="hvae", arch=arch, latent_dim=sum(groups), group_dims=list(groups), hvae_width=16,
                      hidden_units=[24], conv_filters=[4, 8], res_blocks=1, image_shape=SHAPE, group_maps=maps,
                      posterior_flows=flows)
    cfg.latent_dim = sum(latent_group_sizes(cfg))
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
    # With latent maps, the floor covers the vector groups only: the maps' KL is paid as it is.
    model = tiny(arch="conv", free_bits=50.0, maps=MAPS)
    eps = np.zeros((len(x), 1, model.latent_dim), np.float32)
    terms = model.losses_for(tf.constant(x), eps=tf.constant(eps))
    map_kl = model.hierarchy(tf.constant(x), tf.constant(eps.transpose(1, 0, 2)))["kl"].numpy()[2:].mean(axis=(1, 2))
    expected = float(terms["reconstruction"]) + 50.0 * 5 + map_kl.sum()
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("arch,maps,flows", [("mlp", None, 0), ("conv", MAPS, 0), ("mlp", None, 2)])
def test_importance_weighted_bound_is_above_the_elbo_and_rises_with_k(arch, maps, flows):
    model = tiny(groups=(2, 2, 2), arch=arch, maps=maps, flows=flows)
    if flows:  # flows that are not the identity (the output layers start at zero)
        for step in (s for group in model.cells.flows for s in group):
            step.outputs.kernel.assign(tf.random.normal(step.outputs.kernel.shape, stddev=0.3, seed=1))
    x = images(40)
    result = {k: evaluate_images(model, x, iw_samples=k, progress=False) for k in (1, 10, 100)}
    np.testing.assert_allclose(result[1]["nll"], result[1]["neg_elbo"], rtol=1e-4)  # K = 1: the ELBO itself
    assert result[10]["nll"].mean() < result[1]["neg_elbo"].mean()
    assert result[100]["nll"].mean() < result[10]["nll"].mean()
    # With the same K samples, log (1/K) Σ_k w_k >= (1/K) Σ_k log w_k for every image (Jensen):
    # the importance-weighted bound of the hierarchical proposal is above its ELBO.
    eps = tf.random.stateless_normal((10, len(x), model.latent_dim), seed=[0, 1])
    log_w = model.log_weights(tf.constant(x), eps)[0].numpy().astype(np.float64)
    assert np.all(np.logaddexp.reduce(log_w, axis=0) - np.log(10) >= log_w.mean(axis=0) - 1e-9)


@pytest.mark.parametrize("maps", [None, MAPS])
def test_decoder_is_the_prior_pass_of_the_noise(maps):
    """decoder(ε) equals the hierarchy's prior pass z_l = μ^p + σ^p ε_l, and the top group's
    prior is N(0, I): changing only the lowest group's noise leaves the upper groups alone."""
    model = tiny(arch="conv", maps=maps)
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


@pytest.mark.parametrize("maps", [None, MAPS])
def test_weights_survive_a_save_and_load(tmp_path, maps):
    model = tiny(arch="resnet", maps=maps)
    path = tmp_path / "w.weights.h5"
    model.save_weights(str(path))
    other = tiny(arch="resnet", seed=7, maps=maps)
    eps = np.random.default_rng(4).standard_normal((2, model.latent_dim)).astype(np.float32)
    assert not np.allclose(model.decoder(eps)["logits"], other.decoder(eps)["logits"])
    other.load_weights(str(path))
    np.testing.assert_array_equal(model.decoder(eps)["logits"].numpy(), other.decoder(eps)["logits"].numpy())
    x = images(2)
    np.testing.assert_array_equal(model.encoder(x)["loc"].numpy(), other.encoder(x)["loc"].numpy())


@pytest.mark.parametrize("maps", [None, MAPS])
def test_exported_decoder_reproduces_the_model_for_the_same_noise(tmp_path, maps):
    """SavedModel (``serving_default``, ``sample`` and ``sample_groups``), TFLite with
    builtin ops and (with latent maps) ONNX give the in-memory decoder's output for the same
    noise within 1e-5."""
    from ai_edge_litert.interpreter import Interpreter

    from tfvae.export import _decoder_archive, convert_tflite

    model = tiny(groups=(3, 2, 4), arch="conv", maps=maps)
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
    if maps:
        import onnxruntime as ort

        from tfvae.export import convert_onnx

        convert_onnx(tmp_path / "decoder", tmp_path / "decoder.onnx", "z")
        session = ort.InferenceSession(str(tmp_path / "decoder.onnx"), providers=["CPUExecutionProvider"])
        logits = session.run(["logits"], {"z": eps})[0]
        np.testing.assert_allclose(logits, expected, atol=1e-5)


def test_latent_maps_kl_is_the_analytic_gaussian_kl_summed_over_positions():
    """Each latent map's KL(q ‖ p) equals the closed-form Gaussian KL
    log(σ_p/σ_q) + (σ_q² + (μ_q − μ_p)²)/(2σ_p²) − ½ summed over its positions and
    channels (numpy float64, from the cells' own (μ, σ) at the same samples), and its
    log-densities are scipy's normal log-densities summed the same way."""
    model = tiny(groups=(3, 2), arch="conv", maps=MAPS)
    x = images(5)
    eps = np.random.default_rng(6).standard_normal((len(x), model.latent_dim)).astype(np.float32)
    out = model.hierarchy(tf.constant(x), tf.constant(eps[None]))
    cells = model.cells
    assert [tuple(s) for s in cells.shapes] == [(3,), (2,), (2, 2, 2), (4, 4, 1)]
    assert model.group_dims == [3, 2, 8, 16] and model.latent_dim == 29
    feats = model.bottom_up(tf.constant(x))
    h = cells.h0(feats[0])
    total_p = total_q = 0.0
    for i in range(len(cells.shapes)):
        h = cells.enter(i, h)
        loc, scale = cells.prior_params(i, h)
        d_mu, d_sigma = cells.posterior_params(i, h, feats[i])
        if i == 0:
            loc, scale = tf.zeros_like(d_mu), tf.ones_like(d_sigma)
        z = loc + d_mu + scale * d_sigma * cells.noise(i, tf.constant(eps))
        p_loc, p_scale, q_loc, q_scale, z64 = (np.asarray(t, np.float64) for t in (
            loc, scale, loc + d_mu, scale * d_sigma, z))
        axes = tuple(range(1, z64.ndim))  # a map's positions × channels, a vector's dimensions
        if i >= 2:  # a latent map
            kl = np.log(p_scale / q_scale) + (q_scale**2 + (q_loc - p_loc)**2) / (2 * p_scale**2) - 0.5
            assert kl.shape[1:] == tuple(cells.shapes[i])
            np.testing.assert_allclose(out["kl"].numpy()[i, 0], kl.sum(axis=axes), rtol=1e-4, atol=1e-4)
        total_p = total_p + norm.logpdf(z64, p_loc, p_scale).sum(axis=axes)
        total_q = total_q + norm.logpdf(z64, q_loc, q_scale).sum(axis=axes)
        h = cells.advance(i, h, z)
    np.testing.assert_allclose(out["log_p"].numpy()[0], total_p, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(out["log_q"].numpy()[0], total_q, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("shape,likelihood,sigma,maps", [
    ((28, 28, 1), "bernoulli", 0.1, None), ((32, 32, 3), "logistic", 0.1, None),
    ((30, 26, 1), "gaussian", "learned", None), ((30, 26, 1), "gaussian", "learned", [1, 2]),
    ((28, 28, 1), "bernoulli", 0.1, [3])])  # one map at 7×7: the output network upsamples through 14×14
def test_shapes_for_every_likelihood(shape, likelihood, sigma, maps):
    cfg = ModelConfig(model="hvae", arch="resnet", latent_dim=5, group_dims=[2, 3], hvae_width=8, hidden_units=[16],
                      conv_filters=[4, 8], res_blocks=1, likelihood=likelihood, sigma=sigma, image_shape=list(shape),
                      group_maps=maps)
    cfg.latent_dim = sum(latent_group_sizes(cfg))  # maps 8×7×1 and 15×13×2 (odd sizes: cropped) add 446
    model = build_model(cfg, seed=0)
    x = tf.random.uniform((3,) + shape)
    enc = model.encoder(x)
    assert enc["loc"].shape == (3, cfg.latent_dim) and np.all(enc["scale"].numpy() > 0)
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


def test_iaf_log_density_is_tfps_for_the_same_flow():
    """Two IAF steps (Kingma et al. 2016, eq. 14) on a diagonal Gaussian: tfvae's
    log q(z_T) = log q(z_0) − Σ log σ equals tfp's TransformedDistribution with each step
    written as the inverse of a masked autoregressive flow (tfb.Invert(tfb.MaskedAutoregressiveFlow)),
    and each step's Jacobian is triangular with diagonal σ (autoregressive in its order)."""
    import tensorflow_probability as tfp

    from tfvae.flows import IAFStep

    tfb, tfd = tfp.bijectors, tfp.distributions
    keras.utils.set_random_seed(3)
    d, n = 4, 6
    steps = [IAFStep(d, 8, reverse=t % 2 == 1, name=f"f{t}") for t in range(2)]
    context = tf.random.normal((n, 5), seed=2)
    for step in steps:
        step(tf.zeros((1, d)), context[:1])
        step.outputs.kernel.assign(tf.random.normal(step.outputs.kernel.shape, stddev=0.5, seed=4))
    loc, scale = tf.random.normal((n, d), seed=5), tf.exp(tf.random.normal((n, d), stddev=0.3, seed=6))
    base = tfd.Independent(tfd.Normal(loc, scale), 1)
    z0 = base.sample(seed=7)
    z, log_q = z0, base.log_prob(z0)
    for step in steps:
        with tf.GradientTape() as tape:
            tape.watch(z)
            out, log_det = step(z, context)
        jac = tape.batch_jacobian(out, z).numpy()  # [n, d, d]
        order = np.arange(d)[::-1] if step is steps[1] else np.arange(d)
        permuted = jac[:, order][:, :, order]
        assert np.allclose(np.triu(permuted, 1), 0, atol=1e-7)  # output j ignores inputs at or after j
        _, gate = step.shift_and_gate(z, context)
        np.testing.assert_allclose(np.diagonal(jac, axis1=1, axis2=2), gate.numpy(), rtol=1e-5)
        z, log_q = out, log_q - log_det

    def bijector(step):
        # z' = σ z + (1 − σ) m with (m, σ) from z: MAF's inverse x = (y − shift)·exp(−log_scale)
        # evaluated at y = z, with exp(−log_scale) = σ and shift = −m (1 − σ) / σ.
        def shift_and_log_scale(y):
            m, gate = step.shift_and_gate(y, context)
            return -m * (1 - gate) / gate, -tf.math.log(gate)
        return tfb.Invert(tfb.MaskedAutoregressiveFlow(shift_and_log_scale_fn=shift_and_log_scale))

    flow = tfd.TransformedDistribution(base, tfb.Chain([bijector(s) for s in steps[::-1]]))
    np.testing.assert_allclose(flow.log_prob(z).numpy(), log_q.numpy(), rtol=1e-4, atol=1e-4)

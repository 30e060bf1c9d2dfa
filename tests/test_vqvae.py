"""VQ-VAE (``--model vqvae``): quantization, the straight-through gradient, the codebook's
moving averages, the causal prior and its exact log-probability, the bound, the refusals,
and a short real-MNIST run through the CLI (slow)."""

import json
import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import run_cli
from test_cli import assert_one_line_error
from tfvae.config import ModelConfig
from tfvae.models import build_model
from tfvae.models.vqvae import CodePrior, VectorQuantizer, ema_update, nearest_codes


def small_config(**overrides):
    values = dict(model="vqvae", latent_dim=3, image_shape=[12, 12, 1], conv_filters=[4, 8], codebook_size=8,
                  prior_width=8, prior_layers=1)
    return ModelConfig(**{**values, **overrides})


def test_quantization_picks_the_nearest_code():
    rng = np.random.default_rng(0)
    codebook = rng.standard_normal((10, 4)).astype(np.float32)
    z = rng.standard_normal((3, 5, 5, 4)).astype(np.float32)
    got = nearest_codes(tf.constant(z), tf.constant(codebook)).numpy()
    expected = np.argmin(((z[..., None, :] - codebook) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(got, expected)
    assert got.shape == (3, 5, 5) and got.dtype == np.int32


def test_the_straight_through_gradient_reaches_the_encoder_unchanged():
    vq = VectorQuantizer(6, 2, seed=0)
    z_e = tf.constant(np.random.default_rng(1).standard_normal((2, 3, 3, 2)).astype(np.float32))
    vq.build(z_e.shape)
    weights = tf.constant(np.random.default_rng(2).standard_normal((2, 3, 3, 2)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(z_e)
        z_q = vq(z_e)
        loss = tf.reduce_sum(weights * z_q ** 2)
    grad = tape.gradient(loss, z_e).numpy()
    hard = vq.lookup(vq.indices(z_e)).numpy()
    np.testing.assert_allclose(z_q.numpy(), hard, atol=1e-6)  # the forward pass is the code
    np.testing.assert_allclose(grad, 2 * weights.numpy() * hard, rtol=1e-6)  # d loss / d z_q, passed to z_e


def test_one_moving_average_step_equals_the_hand_computation():
    n0 = np.array([2.0, 0.5, 3.0], np.float32)
    m0 = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 3.0]], np.float32)
    z = np.array([[1.0, 1.0], [3.0, 1.0], [0.0, 2.0]], np.float32)
    idx = np.array([0, 0, 1], np.int32)
    g = 0.9
    n, m, e = (a.numpy() for a in ema_update(tf.constant(n0), tf.constant(m0), tf.constant(z), tf.constant(idx), g))
    counts = np.array([2, 1, 0], np.float32)
    sums = np.array([[4, 2], [0, 2], [0, 0]], np.float32)
    np.testing.assert_allclose(n, g * n0 + (1 - g) * counts, rtol=1e-6)
    np.testing.assert_allclose(m, g * m0 + (1 - g) * sums, rtol=1e-6)
    np.testing.assert_allclose(e, m / n[:, None], rtol=1e-6)
    # The layer's update applies it, and restarts the code that fell below once per batch.
    vq = VectorQuantizer(3, 2, decay=g)
    vq.build((None, 2))
    vq.cluster_size.assign(n0)
    vq.embedding_sum.assign(m0)
    vq.update(tf.constant(z[None, None]), tf.constant(idx[None, None]), tf.constant([1, 2]))
    got_n = vq.cluster_size.numpy()
    np.testing.assert_allclose(got_n[[0, 2]], n[[0, 2]], rtol=1e-6)
    np.testing.assert_allclose(vq.codebook.numpy()[[0, 2]], e[[0, 2]], rtol=1e-6)
    assert n[1] < 1.0 and got_n[1] == 1.0  # code 1: N = 0.9·0.5 + 0.1·1 < 1, restarted at a batch vector
    assert any(np.allclose(vq.codebook.numpy()[1], row) for row in z)


def test_the_prior_is_causal_and_its_log_probability_is_the_sum_of_the_steps():
    prior = CodePrior(5, (3, 4), width=8, layers_=2, heads=4)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, (2, 3, 4)).astype(np.int32)
    logits = prior(tf.constant(codes)).numpy().reshape(2, 12, 5)
    for j in (0, 5, 11):
        changed = codes.reshape(2, 12).copy()
        changed[:, j] = (changed[:, j] + 1) % 5
        again = prior(tf.constant(changed.reshape(2, 3, 4))).numpy().reshape(2, 12, 5)
        np.testing.assert_allclose(again[:, :j + 1], logits[:, :j + 1], atol=1e-5)  # positions <= j
        if j < 11:
            assert np.abs(again[:, j + 1:] - logits[:, j + 1:]).max() > 1e-6  # later positions see it
    # Step by step: position i's distribution from the grid with only the codes before i known.
    steps = np.zeros(2)
    flat = codes.reshape(2, 12)
    for i in range(12):
        partial = np.where(np.arange(12) < i, flat, 0).reshape(2, 3, 4).astype(np.int32)
        li = prior(tf.constant(partial)).numpy().reshape(2, 12, 5)[:, i]
        steps += li[np.arange(2), flat[:, i]] - np.log(np.exp(li).sum(axis=1))
    np.testing.assert_allclose(prior.log_prob(tf.constant(codes)).numpy(), steps, rtol=1e-5)
    drawn = prior.sample(3, seed=0)
    assert drawn.shape == (3, 3, 4) and drawn.min() >= 0 and drawn.max() < 5
    np.testing.assert_array_equal(drawn, prior.sample(3, seed=0))


def test_the_bound_is_reconstruction_plus_the_priors_code_length():
    from tfvae.evaluate import evaluate_images, summarize

    model = build_model(small_config(), seed=0)
    x = (np.random.default_rng(0).random((5, 12, 12, 1)) < 0.3).astype(np.float32)
    result = evaluate_images(model, x, iw_samples=3, progress=False)
    codes = model.codes(x)
    log_prior = model.prior_net.log_prob(tf.constant(codes)).numpy()
    z_q = model.quantizer.lookup(tf.constant(codes))
    log_lik = model.likelihood_object.distribution(model.decoder(z_q)).log_prob(x).numpy()
    np.testing.assert_allclose(result["nll"], -(log_lik + log_prior), rtol=1e-5)
    np.testing.assert_allclose(result["neg_elbo"], result["nll"], rtol=1e-5)
    np.testing.assert_allclose(result["kl"], -log_prior, rtol=1e-4)
    assert summarize(result)["elbo_gap"] == pytest.approx(0.0, abs=1e-3)
    # Training steps update the codebook and report the named terms.
    model.compile(optimizer="adam")
    before = model.quantizer.codebook.numpy().copy()
    out = model.apply_step(tf.constant(x))
    assert set(out) == set(model.metric_names)
    assert 1.0 <= float(out["perplexity"]) <= 8.0
    assert not np.allclose(model.quantizer.codebook.numpy(), before)
    assert model.prior_net.trainable_variables and not any(
        "prior" in v.path for v in model.trainable_variables)  # the prior is trained on its own, later


def test_exported_decoder_and_prior_agree_in_tensorflow_litert_and_onnxruntime(tmp_path):
    from tfvae.export import convert_onnx, convert_tflite
    from tfvae.lite import decode, load_decoder, sample_code_grids
    from tfvae.onnx_runtime import onnx_session, run_decoder

    model = build_model(small_config(prior_width=8, prior_layers=1), seed=0)
    archives = model.export_archives()
    assert set(archives) == {"decoder", "encoder", "prior"}
    for name in ("decoder", "prior"):
        archives[name].write_out(str(tmp_path / name), verbose=False)
        (tmp_path / f"{name}.tflite").write_bytes(convert_tflite(tmp_path / name, signatures=("serving_default",)))
        convert_onnx(tmp_path / name, tmp_path / f"{name}.onnx", "codes")
    codes = np.random.default_rng(0).integers(0, 8, (4, 3, 3)).astype(np.int32)
    expected = {"decoder": model.decode_codes(codes).numpy(), "prior": model.prior_net(tf.constant(codes)).numpy()}
    for name, output in (("decoder", "images"), ("prior", "logits")):
        lite = decode(load_decoder(tmp_path / f"{name}.tflite"), codes, "codes", output)
        ort = run_decoder(onnx_session(tmp_path / f"{name}.onnx", input_name="codes", output_name=output), codes,
                          output, "codes")
        np.testing.assert_allclose(lite, expected[name], atol=1e-5)
        np.testing.assert_allclose(ort, expected[name], atol=1e-5)
    # The same seed draws the same grids whichever runtime computes the prior's logits.
    prior_lite = load_decoder(tmp_path / "prior.tflite")
    drawn = sample_code_grids(lambda c: decode(prior_lite, c, "codes", "logits"), 5, model.grid, seed=3)
    np.testing.assert_array_equal(drawn, model.prior_net.sample(5, seed=3))


@pytest.mark.parametrize("args,fragment", [
    (["--codebook-size", "0"], "--codebook-size"),
    (["--codebook-size", "2000000000", "--latent-dim", "64"], "GiB"),
    (["--prior", "vamp"], "--prior vamp needs --model vae"),
    (["--objective", "iwae", "--train-iw-samples", "2"], "--objective iwae needs"),
    (["--free-bits", "0.5"], "--free-bits"),
    (["--kl-warmup-epochs", "3"], "--kl-warmup-epochs"),
    (["--arch", "mlp"], "--arch mlp"),
])
def test_bad_vqvae_options_are_refused_in_one_line(tmp_path, args, fragment):
    result = run_cli("train", "--model", "vqvae", *args, "--run-dir", tmp_path / "run")
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_short_mnist_vqvae_run_learns_codes_and_a_prior_better_than_uniform(tmp_path, tfds_dir):
    run = tmp_path / "run"
    result = run_cli("train", "--dataset", "mnist", "--model", "vqvae", "--max-train-examples", 1500,
                     "--validation-size", 500, "--epochs", 2, "--prior-epochs", 2, "--latent-dim", 8,
                     "--codebook-size", 32, "--prior-width", 32, "--prior-layers", 1, "--run-dir", run,
                     "--no-tensorboard", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    import csv

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert float(rows[-1]["val_reconstruction"]) < float(rows[0]["val_reconstruction"])
    assert {"perplexity", "codes_in_use", "val_perplexity"} <= set(rows[0])
    prior_rows = list(csv.DictReader(open(run / "prior_metrics.csv")))
    assert float(prior_rows[-1]["val_loss"]) < float(prior_rows[0]["val_loss"])
    for name in ("samples.png", "reconstructions.png"):
        assert (run / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    result = run_cli("evaluate", run, "--max-examples", 300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((run / "eval.json").read_text())
    m = report["metrics"]
    assert report["protocol"]["iw_samples"] == 1 and "bound" in report["protocol"]["estimator"]
    assert m["nll"] == pytest.approx(m["neg_elbo"]) and np.isfinite(m["nll_bits_per_dim"])
    uniform = m["reconstruction"] + 7 * 7 * math.log(32)  # the same bound under a uniform prior
    assert m["neg_elbo"] < uniform
    out = tmp_path / "uniform.png"
    result = run_cli("sample", run, "-n", 8, "--source", "uniform", "--out", out)
    assert result.returncode == 0 and out.read_bytes()[:4] == b"\x89PNG", result.stderr[-2000:]
    result = run_cli("export", run, "--out", tmp_path / "exported", "--name", "vq", "--tflite")
    assert result.returncode == 0, result.stderr[-2000:]
    card = json.loads(next((tmp_path / "exported" / "vq" / "tflite").glob("*/model_card.json")).read_text())
    assert card["decoder_input"] == {"name": "codes", "shape": [7, 7], "dtype": "int32"}
    assert card["prior"]["kind"] == "autoregressive" and card["prior"]["codebook_size"] == 32
    out = tmp_path / "generated.png"  # LiteRT and numpy: the prior's h·w calls, then the decoder
    result = run_cli("generate", tmp_path / "exported" / "vq", "-n", 4, "--out", out)
    assert result.returncode == 0 and out.read_bytes()[:4] == b"\x89PNG", result.stderr[-2000:]
    assert_one_line_error(run_cli("demo", tmp_path / "exported" / "vq", "--port", 0), "code")

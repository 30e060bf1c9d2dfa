"""The VAE model: shapes for every architecture / likelihood / channel count, the
training step, KL warm-up, and a short real-MNIST training whose validation loss falls."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae.config import DataConfig, ModelConfig, RunConfig
from tfvae.data import heldout_pipeline, load_dataset, train_pipeline
from tfvae.models import build_model


def model_config(arch, likelihood, sigma, shape, latent=4):
    cfg = RunConfig(model=ModelConfig(model="vae", arch=arch, likelihood=likelihood, sigma=sigma, latent_dim=latent,
                                      hidden_units=[32], conv_filters=[8, 16], image_shape=list(shape)))
    return cfg.resolved().model


VARIANTS = [("bernoulli", 0.1), ("gaussian", 0.2), ("gaussian", "learned")]


@pytest.mark.parametrize("shape", [(28, 28, 1), (32, 32, 3), (30, 26, 1)])
@pytest.mark.parametrize("arch", ["mlp", "conv", "kerasio", "resnet"])
@pytest.mark.parametrize("likelihood,sigma", VARIANTS)
def test_shapes(arch, likelihood, sigma, shape):
    model = build_model(model_config(arch, likelihood, sigma, shape), seed=0)
    x = tf.random.uniform((5,) + shape)
    enc = model.encoder(x)
    assert enc["loc"].shape == (5, 4) and enc["scale"].shape == (5, 4)
    assert np.all(enc["scale"].numpy() > 0)
    q = model.posterior(x)
    assert q.batch_shape == (5,) and q.event_shape == (4,)
    params = model.decoder(enc["loc"])
    expected = {"bernoulli": {"logits"}, "gaussian": {"loc"} if sigma != "learned" else {"loc", "scale"}}[likelihood]
    assert set(params) == expected
    assert all(v.shape == (5,) + shape for v in params.values())
    p = model.likelihood(tf.zeros((3, 5, 4)))  # leading sample axis
    assert p.batch_shape == (3, 5) and p.event_shape == shape
    mean = model.decode_mean(enc["loc"]).numpy()
    assert mean.shape == (5,) + shape and mean.min() >= 0 and mean.max() <= 1
    rec, kl = model.elbo_terms(x, samples=2)
    assert rec.shape == (5,) and kl.shape == (5,) and np.all(kl.numpy() >= 0)


def test_encoder_and_decoder_are_separate_named_models():
    model = build_model(model_config("conv", "bernoulli", 0.1, (28, 28, 1)), seed=0)
    assert model.encoder.name == "encoder" and model.decoder.name == "decoder"
    assert model.decoder.input_shape == (None, 4)


def test_train_steps_lower_the_loss_and_warmup_ramps_the_kl_weight():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    prototypes = rng.integers(0, 2, (4, 12, 12, 1)) * 255
    images = prototypes[rng.integers(0, 4, 256)].astype(np.uint8)
    model = build_model(model_config("mlp", "bernoulli", 0.1, (12, 12, 1)), kl_warmup_steps=40, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    history = model.fit(train_pipeline(images, 32, "static", 0), steps_per_epoch=8, epochs=5, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    # 8 steps per epoch, warm-up over 40 steps: the weight reaches β = 1 in epoch 5.
    assert history["kl_weight"][0] < 0.15 and history["kl_weight"][-1] > 0.9
    np.testing.assert_allclose(history["neg_elbo"], np.add(history["reconstruction"], history["kl"]), rtol=1e-5)


def test_mc_samples_average_the_reconstruction_term():
    model = build_model(model_config("mlp", "bernoulli", 0.1, (8, 8, 1)), seed=0)
    x = tf.cast(tf.random.uniform((16, 8, 8, 1)) > 0.5, tf.float32)
    many = np.mean([model.elbo_terms(x, samples=64)[0].numpy() for _ in range(4)], axis=0)
    few = np.mean([model.elbo_terms(x, samples=1)[0].numpy() for _ in range(256)], axis=0)
    np.testing.assert_allclose(many, few, rtol=0.02)
    # The extra samples are used: the estimate's variance falls like 1/S (ignored samples
    # would leave it where S = 1 puts it) ...
    var1 = np.var([model.elbo_terms(x, samples=1)[0].numpy() for _ in range(200)], axis=0).mean()
    var16 = np.var([model.elbo_terms(x, samples=16)[0].numpy() for _ in range(200)], axis=0).mean()
    print(f"variance of the reconstruction estimate: S=1 {var1:.4f}, S=16 {var16:.4f} (ratio {var16 / var1:.3f})")
    assert var16 < 0.2 * var1
    # ... and each of the pipeline's S noise draws enters the loss: changing only the last one changes it.
    eps = np.random.default_rng(0).standard_normal((16, 4, model.latent_dim)).astype(np.float32)
    base = model.elbo_terms(x, eps=tf.constant(eps))[0].numpy()
    eps[:, -1] += 1.0
    assert np.all(np.abs(model.elbo_terms(x, eps=tf.constant(eps))[0].numpy() - base) > 0)


@pytest.mark.slow
def test_short_real_mnist_training_lowers_validation_loss(tfds_dir):
    data = load_dataset(DataConfig(dataset="mnist", max_train_examples=8000, validation_size=2000))
    cfg = RunConfig(model=ModelConfig(model="vae", latent_dim=16, image_shape=[28, 28, 1])).resolved()
    keras.utils.set_random_seed(0)
    model = build_model(cfg.model, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    val = heldout_pipeline(data.validation, 500, "dynamic", 0)
    before = model.evaluate(val, verbose=0, return_dict=True)["neg_elbo"]
    history = model.fit(train_pipeline(data.train, 128, "dynamic", 0), steps_per_epoch=63, validation_data=val, epochs=5,
                        verbose=0).history  # 315 steps
    after = history["val_neg_elbo"]
    assert after[-1] < after[0] < before
    assert after[-1] < 150  # nats; an untrained model scores about 543


@pytest.mark.parametrize("h,w,c_in,c_out,kwargs", [
    (7, 7, 5, 3, {}), (14, 14, 8, 1, {"activation": "relu"}), (4, 6, 3, 2, {"use_bias": False}),
    (5, 5, 3, 2, {"strides": 1}), (28, 28, 32, 1, {"strides": 1}),
    (6, 6, 3, 2, {"padding": "valid"}),  # not 'same': falls back to Keras
])
def test_matmul_transposed_convolution_equals_keras(h, w, c_in, c_out, kwargs, tmp_path):
    from keras import layers

    from tfvae.networks import Conv2DTranspose

    x = tf.random.normal((3, h, w, c_in), seed=0)
    options = {"strides": 2, "padding": "same", **kwargs}
    reference = keras.Sequential([keras.Input((h, w, c_in)), layers.Conv2DTranspose(c_out, 3, **options)])
    ours = keras.Sequential([keras.Input((h, w, c_in)), Conv2DTranspose(c_out, 3, **options)])
    for layer in reference.layers:
        if layer.use_bias:
            layer.bias.assign(tf.random.normal(layer.bias.shape, seed=1))
    # Weight files are interchangeable (the class keeps Keras's name).
    reference.save_weights(str(tmp_path / "r.weights.h5"))
    ours.load_weights(str(tmp_path / "r.weights.h5"))
    np.testing.assert_allclose(ours(x).numpy(), reference(x).numpy(), atol=1e-5)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = tf.reduce_sum(reference(x) ** 2), tf.reduce_sum(ours(x) ** 2)
    np.testing.assert_allclose(tape.gradient(b, x).numpy(), tape.gradient(a, x).numpy(), atol=1e-4)


def test_nll_does_not_depend_on_the_chunk_size_or_the_images_beside_it():
    """Noise keyed by (seed, image index): chunking and subsets change nothing but rounding."""
    from tfvae.evaluate import evaluate_images

    model = build_model(model_config("mlp", "bernoulli", 0.1, (8, 8, 1)), seed=0)
    x = (np.random.default_rng(1).random((6, 8, 8, 1)) > 0.5).astype(np.float32)
    runs = {chunk: evaluate_images(model, x, iw_samples=50, seed=3, chunk=chunk, progress=False)["nll"]
            for chunk in (7, 64, 300, 4096)}
    for chunk, nll in runs.items():
        np.testing.assert_allclose(nll, runs[4096], atol=1e-4, err_msg=f"chunk {chunk}")
    part = evaluate_images(model, x[2:4], iw_samples=50, seed=3, chunk=64, progress=False, first_index=2)["nll"]
    np.testing.assert_allclose(part, runs[4096][2:4], atol=1e-4)
    other_seed = evaluate_images(model, x, iw_samples=50, seed=4, progress=False)["nll"]
    assert np.abs(other_seed - runs[4096]).max() > 1e-3  # the seed does change the samples


def test_progress_without_a_terminal_is_ten_lines_with_the_time_left(capsys):
    """evaluate's progress (issue 28): a pipe or log gets one line per tenth of the images,
    each with the time left, not a line per batched call."""
    from tfvae.evaluate import Progress

    progress = Progress(1000, "test images")
    for _ in range(250):
        progress.add(4)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[-1].startswith("1000/1000 test images")
    assert all("s left" in line for line in lines)


def test_call_shape_keeps_the_split_of_the_samples():
    """K ≤ chunk: several images' K samples per call; K > chunk: calls of chunk samples and
    one of the rest (the split of the evaluations before issue 28, bit for bit)."""
    from tfvae.evaluate import call_shape

    assert call_shape(1000, 4096) == (1000, 4)
    assert call_shape(5000, 4096) == (4096, 1)
    assert call_shape(3, 1) == (1, 1)


def test_iwae_validation_uses_the_unweighted_bound_during_warm_up():
    """The checkpoint of an iwae run is picked on the K-sample bound with KL weight 1, not on
    the warm-up-weighted training loss."""
    model = build_model(model_config("mlp", "bernoulli", 0.1, (8, 8, 1)), seed=0, objective="iwae", iw_samples=3,
                        kl_warmup_steps=1000)
    assert model.checkpoint_monitor == "val_loss"
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    x = (np.random.default_rng(1).random((32, 8, 8, 1)) > 0.5).astype(np.float32)
    history = model.fit(x, validation_data=x[:16], batch_size=16, epochs=1, verbose=0).history
    assert history["kl_weight"][0] < 0.01 and history["val_kl_weight"][0] == 1.0


def test_count_flops_counts_the_layers_of_a_nested_network():
    """2·in·out per Dense and 2·H·W·k·k·C_in·C_out per Conv2D, also inside a nested network
    (the hierarchical VAE's decoder holds its output network that way)."""
    import keras

    from tfvae.networks import count_flops

    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4 * 4 * 2), keras.layers.Reshape((4, 4, 2)),
                              keras.layers.Conv2D(3, 3, padding="same")], name="inner")
    outer = keras.Sequential([keras.Input((5,)), keras.layers.Dense(6), inner])
    assert count_flops(inner) == 2 * 6 * 32 + 2 * 4 * 4 * 3 * 3 * 2 * 3
    assert count_flops(outer) == 2 * 5 * 6 + count_flops(inner)

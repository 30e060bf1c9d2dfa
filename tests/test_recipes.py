"""Training recipes (issue 6), correctness only: XLA = no XLA, learned priors normalise,
the VampPrior is the mean of its pseudo-inputs' posteriors, free bits hold their floor,
and the EMA weights are the ones checkpointed (hence evaluated and exported)."""

import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfvae.training.callbacks import AtomicCheckpoint
from tfvae.config import ModelConfig, RunConfig, TrainConfig, PRESET_DIR, latent_group_sizes, load_preset, preset_names
from tfvae.models import build_model
from tfvae.training import EMAForEvaluation, make_optimizer

SHAPE = (28, 28, 1)


def config(latent=4, **extra):
    cfg = RunConfig(model=ModelConfig(model="vae", latent_dim=latent, hidden_units=[32], conv_filters=[8, 16],
                                      image_shape=list(SHAPE), **extra))
    return cfg.resolved().model


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(n,) + SHAPE) < rng.uniform(0.1, 0.9, size=(1,) + SHAPE)).astype(np.float32)


@pytest.mark.parametrize("objective,k", [("elbo", 1), ("iwae", 4)])
def test_xla_and_plain_steps_give_the_same_loss(objective, k):
    x = images(32)
    eps = np.random.default_rng(1).standard_normal((32, k, 4)).astype(np.float32)
    losses = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = build_model(config(prior="mog", prior_components=3), seed=0, objective=objective, iw_samples=k)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=jit)
        logs = model.fit(tf.data.Dataset.from_tensor_slices((x, eps)).batch(32), epochs=1, verbose=0)
        losses.append(logs.history["loss"][0])
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


def test_mixture_prior_normalises():
    model = build_model(config(latent=1, prior="mog", prior_components=4), seed=0)
    p = model.prior()
    weights = tf.nn.softmax(p.mixture_distribution.logits).numpy()
    assert weights.sum() == pytest.approx(1.0, abs=1e-6)
    grid = np.linspace(-12, 12, 20001, dtype=np.float32)[:, None]
    density = np.exp(p.log_prob(grid).numpy().astype(np.float64))
    assert np.trapezoid(density, grid[:, 0]) == pytest.approx(1.0, abs=1e-4)
    log_w, loc, scale = model.prior_mixture()
    assert np.exp(log_w).sum() == pytest.approx(1.0) and loc.shape == (4, 1) and np.all(scale > 0)


def test_vamp_prior_is_the_mean_of_the_pseudo_input_posteriors():
    model = build_model(config(latent=3, prior="vamp", prior_components=5), seed=0)
    z = np.random.default_rng(0).standard_normal((7, 3)).astype(np.float32)
    q = model.posterior(model.pseudo_inputs())  # batch [5]
    per_component = q.log_prob(z[:, None, :]).numpy().astype(np.float64)  # [7, 5]
    expected = np.log(np.mean(np.exp(per_component), axis=1))
    np.testing.assert_allclose(model.prior().log_prob(z).numpy(), expected, rtol=1e-5)
    # 2-D grid integral of the VampPrior density is 1.
    model2 = build_model(config(latent=2, prior="vamp", prior_components=3), seed=1)
    g = np.linspace(-10, 10, 801, dtype=np.float32)
    zz = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    dens = np.exp(model2.prior().log_prob(zz).numpy().astype(np.float64)).reshape(801, 801)
    assert np.trapezoid(np.trapezoid(dens, g), g) == pytest.approx(1.0, abs=2e-3)


def test_free_bits_floor():
    lam = 0.5
    model = build_model(config(latent=6), seed=0, free_bits=lam)
    x = tf.constant(images(16))
    q = model.posterior(x)
    # Fresh weights: the posterior is near N(0, 1), so every dimension's KL is below λ.
    from tfvae.distributions import kl_per_dimension

    per_dim = tf.reduce_mean(kl_per_dimension(q.mean(), q.stddev()), axis=0).numpy()
    assert np.all(per_dim < lam)
    term = float(model.free_bits_kl(q))
    assert term == pytest.approx(float(np.sum(np.maximum(per_dim, lam))), rel=1e-6)
    assert term >= 6 * lam - 1e-6
    terms = model.losses_for(x, eps=tf.zeros((16, 1, 6)))
    loss, reconstruction, kl = terms["loss"], terms["reconstruction"], terms["kl"]
    assert float(loss) == pytest.approx(float(reconstruction) + term, rel=1e-5)
    assert float(kl) < term  # the tracked KL is the true one, the loss uses the floor
    # The floor's gradient is zero for the clamped dimensions.
    with tf.GradientTape() as tape:
        q = model.posterior(x)
        t = model.free_bits_kl(q)
    grads = tape.gradient(t, model.encoder.get_layer("loc").kernel)
    assert float(tf.reduce_max(tf.abs(grads))) == 0.0


def test_ema_weights_are_checkpointed_and_differ_from_the_raw_weights(tmp_path):
    model = build_model(config(), seed=0)
    t = TrainConfig(epochs=1, ema_decay=0.9)
    model.compile(optimizer=make_optimizer(t, steps_per_epoch=8))
    x = images(128)
    eps = np.random.default_rng(0).standard_normal((128, 1, 4)).astype(np.float32)
    ema = EMAForEvaluation()
    seen = {}

    def record(epoch, logs):
        seen["raw"] = [v.numpy().copy() for v in model.trainable_variables]
        seen["ema"] = [v.numpy().copy() for v in model.optimizer._model_variables_moving_average]

    (tmp_path / "ck").mkdir()
    model.fit(tf.data.Dataset.from_tensor_slices((x, eps)).batch(16), epochs=1, verbose=0,
              validation_data=tf.data.Dataset.from_tensor_slices(x[:32]).batch(16),
              callbacks=[ema, AtomicCheckpoint(tmp_path / "ck"), ema.restore_callback(),
                         keras.callbacks.LambdaCallback(on_epoch_end=record)])
    assert any(not np.allclose(r, e) for r, e in zip(seen["raw"], seen["ema"]))
    saved = build_model(config(), seed=5)
    saved.load_weights(str(tmp_path / "ck" / "best.weights.h5"))
    for var, e in zip(saved.trainable_variables, seen["ema"]):
        np.testing.assert_allclose(var.numpy(), e, atol=1e-7)


def test_cosine_schedule_and_preset():
    opt = make_optimizer(TrainConfig(epochs=10, learning_rate=1e-3, lr_schedule="cosine"), steps_per_epoch=100)
    schedule = opt._learning_rate
    assert float(schedule(0)) == pytest.approx(1e-3) and float(schedule(1000)) == pytest.approx(1e-5, rel=1e-3)
    preset = load_preset("mnist-best")
    cfg = RunConfig.from_dict(preset)
    cfg.validate()
    assert cfg.train.objective == "iwae" and cfg.data.dataset == "mnist"
    assert math.isfinite(cfg.train.learning_rate)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_a_valid_recipe(name):
    """Each file in tfvae/presets/ is a RunConfig that validates, says what it is, and an
    hvae preset's latent size follows from its groups once the image shape is known."""
    assert len(json.loads((PRESET_DIR / f"{name}.json").read_text())["description"]) > 40
    cfg = RunConfig.from_dict(load_preset(name))
    cfg.model.image_shape = [28, 28, 1]
    cfg = cfg.resolved()
    cfg.validate()
    if cfg.model.model == "hvae":
        sizes = latent_group_sizes(cfg.model)
        assert sum(sizes) == cfg.model.latent_dim
        assert sizes[:len(cfg.model.group_dims)] == list(cfg.model.group_dims)
        assert len(sizes) == len(cfg.model.group_dims) + len(cfg.model.group_maps or [])


def test_mixed_bfloat16_training_keeps_float32_variables_and_outputs(tmp_path):
    cfg = config()
    model = build_model(cfg, seed=0, precision="mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"  # restored after building
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    x = images(32)
    eps = np.random.default_rng(0).standard_normal((32, 1, 4)).astype(np.float32)
    q = model.posterior(x)
    assert q.dtype == tf.float32 and model.decoder(q.mean())["logits"].dtype == tf.float32
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    loss = model.fit(tf.data.Dataset.from_tensor_slices((x, eps)).batch(16), epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    model.save_weights(str(tmp_path / "w.weights.h5"))
    plain = build_model(cfg, seed=1)
    plain.load_weights(str(tmp_path / "w.weights.h5"))
    recon_mixed, _ = model.elbo_terms(tf.constant(x), eps=tf.constant(eps))
    recon_plain, _ = plain.elbo_terms(tf.constant(x), eps=tf.constant(eps))
    # bfloat16 keeps 8 bits of mantissa: the same weights give nearly the same loss.
    np.testing.assert_allclose(recon_mixed.numpy(), recon_plain.numpy(), rtol=0.02)


AVX2_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
BF16_CPUINFO = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"


def test_precision_is_refused_where_the_machine_would_emulate_it():
    from tfvae.errors import TfvaeError
    from tfvae.hardware import check_precision, cpu_flags, native_precisions

    avx2, bf16 = cpu_flags(AVX2_CPUINFO), cpu_flags(BF16_CPUINFO)
    assert avx2 == ["avx2"] and bf16 == ["avx2", "avx512f", "avx512_bf16"]
    assert native_precisions(avx2, gpus=[])["mixed_bfloat16"] is None
    assert "avx512_bf16" in native_precisions(bf16, gpus=[])["mixed_bfloat16"]
    check_precision("mixed_bfloat16", bf16, gpus=[])
    check_precision("mixed_bfloat16", avx2, gpus=[(9, 0)])  # an Ampere-or-newer GPU has bfloat16
    check_precision("mixed_float16", avx2, gpus=[(7, 5)])
    for precision, gpus in (("mixed_bfloat16", []), ("mixed_bfloat16", [(7, 5)]), ("mixed_float16", [])):
        with pytest.raises(TfvaeError, match=f"--precision {precision}: .*use --precision float32"):
            check_precision(precision, avx2, gpus=gpus)
    for flags in (avx2, bf16):
        check_precision("float32", flags, gpus=[])


def test_steps_per_execution_left_out_is_chosen_per_run_and_recorded():
    from tfvae.config import AUTO_STEPS_PER_EXECUTION, RunConfig, TrainConfig
    from tfvae.training import resolve_speed

    for steps_per_epoch, multi, expected in ((430, False, AUTO_STEPS_PER_EXECUTION),
                                             (8, False, min(8, AUTO_STEPS_PER_EXECUTION)), (430, True, 1)):
        t = TrainConfig()
        assert t.steps_per_execution is None
        resolve_speed(t, steps_per_epoch, multi)
        assert t.steps_per_execution == expected
    given = TrainConfig(steps_per_execution=5)
    resolve_speed(given, 430, False)
    assert given.steps_per_execution == 5
    cfg = RunConfig(train=TrainConfig())
    cfg.validate()  # None (auto) is valid in config.json
    assert RunConfig.from_dict(cfg.to_dict()).train.steps_per_execution is None


def test_an_epoch_is_the_same_updates_for_every_steps_per_execution():
    """Keras runs whole calls of N steps: unclamped, N = 3 made an 8-step epoch 9 updates and
    N = 70 made it 70. resolve_speed lowers N to a divisor of the epoch's steps."""
    import keras
    import numpy as np
    import tensorflow as tf

    from tfvae.config import TrainConfig
    from tfvae.training import resolve_speed

    steps_per_epoch = 8
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    weights = []
    for wanted in (1, 3, 5, 8, 70, 10 ** 9):
        t = TrainConfig(steps_per_execution=wanted)
        resolve_speed(t, steps_per_epoch, False)
        assert steps_per_epoch % t.steps_per_execution == 0 and t.steps_per_execution <= min(wanted, steps_per_epoch)
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse", steps_per_execution=t.steps_per_execution)
        ds = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(8).repeat()
        model.fit(ds, steps_per_epoch=steps_per_epoch, epochs=2, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == 2 * steps_per_epoch, wanted
        weights.append(np.concatenate([w.ravel() for w in model.get_weights()]))
    for w in weights[1:]:  # the same updates on the same batches: the same weights
        np.testing.assert_allclose(w, weights[0], rtol=1e-5, atol=1e-6)


def test_learned_prior_is_exported_with_the_decoder(tmp_path):
    from tfvae.export import _decoder_archive, convert_tflite, prior_card
    from tfvae.lite import draw_prior

    model = build_model(config(latent=3, prior="mog", prior_components=4), seed=0)
    _decoder_archive(model).write_out(str(tmp_path / "decoder"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "decoder"))
    log_w, loc, scale = model.prior_mixture()
    cdf = np.cumsum(np.exp(log_w))
    eps = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    u = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 0.999], np.float32)
    out = loaded.signatures["sample"](eps=tf.constant(eps), u=tf.constant(u))
    c = np.searchsorted(cdf, u, side="right")
    np.testing.assert_allclose(out["z"].numpy(), loc[c] + scale[c] * eps, rtol=1e-5, atol=1e-5)
    assert len(convert_tflite(tmp_path / "decoder")) > 1000  # builtin ops only
    from tfvae.export import convert_onnx
    from tfvae.onnx_runtime import onnx_session, run_decoder

    convert_onnx(tmp_path / "decoder", tmp_path / "decoder.onnx", "z")
    draws = draw_prior({"latent_dim": 3, "prior": prior_card(model)}, 256, seed=1)  # z from the learned prior
    reference = loaded.signatures["serving_default"](z=tf.constant(draws))["images"].numpy()
    np.testing.assert_allclose(run_decoder(onnx_session(tmp_path / "decoder.onnx"), draws), reference, atol=1e-5)
    card = {"latent_dim": 3, "prior": prior_card(model)}
    assert card["prior"]["kind"] == "mog" and sum(card["prior"]["weights"]) == pytest.approx(1.0)
    z = draw_prior(card, 4000, seed=0)
    mixture_mean = (np.exp(log_w)[:, None] * loc).sum(0)
    np.testing.assert_allclose(z.mean(0), mixture_mean, atol=0.1)


def test_weight_decay_shrinks_the_kernels_and_leaves_the_biases():
    """AdamW (Loshchilov & Hutter 2019, algorithm 2): with a zero gradient, one step
    multiplies each kernel by 1 − lr · weight_decay and leaves the biases as they were."""
    layer = keras.layers.Dense(3, bias_initializer="ones")
    layer.build((None, 4))
    kernel, bias = layer.kernel.numpy().copy(), layer.bias.numpy().copy()
    opt = make_optimizer(TrainConfig(learning_rate=0.01, weight_decay=0.5), steps_per_epoch=1)
    opt.apply_gradients([(tf.zeros_like(layer.kernel), layer.kernel), (tf.zeros_like(layer.bias), layer.bias)])
    np.testing.assert_allclose(layer.kernel.numpy(), kernel * (1 - 0.01 * 0.5), rtol=1e-6)
    np.testing.assert_array_equal(layer.bias.numpy(), bias)
    plain = make_optimizer(TrainConfig(learning_rate=0.01), steps_per_epoch=1)
    assert not isinstance(plain, keras.optimizers.AdamW)

"""VQ-VAE (``--model vqvae``): a grid of discrete codes and a learned autoregressive prior.

van den Oord et al. 2017 ("Neural Discrete Representation Learning"), with the codebook
updated by exponential moving averages (their appendix A.1; Razavi et al. 2019, VQ-VAE-2,
eqs. 2–4) and dead codes restarted from the encoder's outputs (Dhariwal et al. 2020,
Jukebox, section 2.2; Williams et al. 2020):

* encoder: images [B, H, W, C] -> z_e [B, h, w, D] (stride-2 convolutions, ``conv_filters``,
  then a 1×1 convolution to D = ``latent_dim``);
* quantization: k(i) = argmin_k ‖z_e(i) − e_k‖², z_q(i) = e_k(i), over a codebook e of
  K = ``codebook_size`` vectors; the decoder's gradient reaches the encoder unchanged
  through the straight-through estimator z_e + sg(z_q − z_e) (their eq. 3);
* loss: −log p(x | z_q) + β_c ‖z_e − sg(z_q)‖² with β_c = ``commitment`` (0.25; their
  eq. 3 without the codebook term, which the moving averages replace);
* codebook: after each step, with n_k the number of grid vectors assigned to code k in the
  batch and s_k their sum, N_k ← γ N_k + (1 − γ) n_k, m_k ← γ m_k + (1 − γ) s_k, e_k = m_k / N_k
  (γ = ``codebook_decay``, 0.99); a code whose N_k fell below :data:`RESTART_BELOW` (used on
  average less than once per batch, Jukebox's threshold) is restarted at a random encoder
  output of the batch (at the first step this sets every unused code from the data);
* prior: p(k) = Π_i Categorical(k_i | k_<i) over the h·w grid in raster order, a small causal
  transformer (:class:`CodePrior`), trained after the autoencoder on the training split's
  codes (:meth:`VQVAE.fit_artifacts`).

The posterior is a point mass q(z|x) = δ(z − z_q(x)), so the ELBO is

    −log p(x) ≤ −log p(x | z_q(x)) − log p(z_q(x))

(the KL of a point mass to the prior is −log p(z_q(x)); with a uniform prior it is the
constant h·w·log K of van den Oord et al. 2017, section 3.1). ``evaluate`` reports this bound
in nats and bits/dim on the same test protocol as the VAEs' importance-weighted NLL; with a
point-mass posterior every importance sample is the same, so the importance-weighted bound
equals it for every K.

Shapes: the commands that use a continuous code (``interpolate``, ``latent``,
``classify``, ``traverse``) see the encoder's output z_e flattened, float32 [B, h·w·D]
(:attr:`VQVAE.latent_dim`); :meth:`VQVAE.decode_mean` quantizes it before decoding.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import layers, ops

from .. import likelihoods
from ..config import ModelConfig
from ..errors import TfvaeError
from ..networks import upsampled_output
from .base import FamilyModel

tfd = tfp.distributions

RESTART_BELOW = 1.0  # N_k below this (used less than once per batch on average): restarted, not in use
PRIOR_FILE = "prior.weights.h5"  # the learned prior's weights, in RUN_DIR/checkpoints/


def grid_shape(image_shape, n_down: int):
    """(h, w) of the code grid: each stride-2 convolution halves H and W (rounding up)."""
    return math.ceil(image_shape[0] / 2 ** n_down), math.ceil(image_shape[1] / 2 ** n_down)


def codebook_bytes(codebook_size: int, dim: int, batch_vectors: int = 0) -> int:
    """Bytes the codebook needs in float32: the codebook, its moving-average sums and the
    [batch_vectors, K] distance matrix of one step."""
    return 4 * (2 * codebook_size * dim + codebook_size + batch_vectors * codebook_size)


def nearest_codes(z, codebook):
    """Indices of the nearest codes, argmin_k ‖z − e_k‖², for z float32 [..., D] and a
    codebook [K, D]: int32 [...]."""
    flat = tf.reshape(z, [-1, tf.shape(codebook)[1]])
    d2 = (tf.reduce_sum(flat ** 2, 1, keepdims=True) - 2.0 * tf.matmul(flat, codebook, transpose_b=True)
          + tf.reduce_sum(codebook ** 2, 1)[None, :])
    return tf.reshape(tf.argmin(d2, axis=1, output_type=tf.int32), tf.shape(z)[:-1])


def ema_update(cluster_size, embedding_sum, flat_z, indices, decay: float):
    """One moving-average step of the codebook (Razavi et al. 2019, eqs. 2–4).

    Args:
        cluster_size: N [K]; embedding_sum: m [K, D] (float32).
        flat_z: the batch's encoder outputs [M, D]; indices: their codes int32 [M].
        decay: γ.

    Returns:
        (N', m', e') with N' = γN + (1 − γ)n, m' = γm + (1 − γ)s, e' = m' / N' (n_k, s_k: the
        count and the sum of the vectors assigned to code k).
    """
    k = tf.shape(cluster_size)[0]
    onehot = tf.one_hot(indices, k, dtype=flat_z.dtype)  # [M, K]
    counts = tf.reduce_sum(onehot, 0)
    sums = tf.matmul(onehot, flat_z, transpose_a=True)
    ctx = tf.distribute.get_replica_context()  # None in a cross-replica context
    if ctx is not None and ctx.num_replicas_in_sync > 1:  # every replica's batch counts
        counts, sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [counts, sums])
    n = decay * cluster_size + (1.0 - decay) * counts
    m = decay * embedding_sum + (1.0 - decay) * sums
    return n, m, m / tf.maximum(n, 1e-12)[:, None]


@keras.saving.register_keras_serializable(package="tfvae")
class VectorQuantizer(layers.Layer):
    """The codebook and its moving averages (non-trainable weights, updated by :meth:`update`).

    Call on z_e float32 [B, h, w, D] -> z_q with the straight-through gradient,
    z_e + sg(e_k − z_e), [B, h, w, D].
    """

    def __init__(self, codebook_size: int, dim: int, decay: float = 0.99, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.codebook_size, self.dim, self.decay = int(codebook_size), int(dim), float(decay)
        self.seed = seed

    def build(self, input_shape):
        init = keras.initializers.VarianceScaling(1.0, "fan_in", "uniform", seed=self.seed)
        agg = "only_first_replica"  # every replica computes the same update (all-reduced counts)
        self.codebook = self.add_weight(name="codebook", shape=(self.codebook_size, self.dim), initializer=init,
                                        trainable=False, aggregation=agg)
        self.cluster_size = self.add_weight(name="cluster_size", shape=(self.codebook_size,), initializer="ones",
                                            trainable=False, aggregation=agg)
        self.embedding_sum = self.add_weight(name="embedding_sum", shape=(self.codebook_size, self.dim),
                                             initializer="zeros", trainable=False, aggregation=agg)
        self.embedding_sum.assign(self.codebook)  # e = m / N with N = 1 at the start

    def indices(self, z_e):
        """Nearest codes of z_e [..., D]: int32 [...]."""
        return nearest_codes(tf.cast(z_e, tf.float32), tf.convert_to_tensor(self.codebook))

    def lookup(self, indices):
        """Code vectors e_k for int indices [...]: float32 [..., D]."""
        return tf.gather(tf.convert_to_tensor(self.codebook), indices)

    def call(self, z_e):
        z_e = tf.cast(z_e, tf.float32)
        z_q = self.lookup(self.indices(z_e))
        return z_e + tf.stop_gradient(z_q - z_e)

    def update(self, z_e, indices, seed):
        """One moving-average step on this batch (:func:`ema_update`), then dead-code
        restarts: codes with N_k < :data:`RESTART_BELOW` take a random encoder output of the
        batch (N_k = 1, m_k = that vector). ``seed``: int32 [2] for the stateless draw."""
        flat = tf.reshape(tf.stop_gradient(tf.cast(z_e, tf.float32)), [-1, self.dim])
        n, m, e = ema_update(tf.convert_to_tensor(self.cluster_size), tf.convert_to_tensor(self.embedding_sum),
                             flat, tf.reshape(indices, [-1]), self.decay)
        dead = n < RESTART_BELOW
        pick = tf.random.stateless_uniform([self.codebook_size], seed, 0, tf.shape(flat)[0], dtype=tf.int32)
        fresh = tf.gather(flat, pick)
        self.cluster_size.assign(tf.where(dead, tf.ones_like(n), n))
        self.embedding_sum.assign(tf.where(dead[:, None], fresh, m))
        self.codebook.assign(tf.where(dead[:, None], fresh, e))

    def get_config(self):
        return {**super().get_config(), "codebook_size": self.codebook_size, "dim": self.dim, "decay": self.decay}


def _conv_encoder(cfg: ModelConfig) -> keras.Model:
    images = keras.Input(tuple(cfg.image_shape), name="images")
    h = images
    for i, f in enumerate(cfg.conv_filters):
        h = layers.Conv2D(f, 3 if i == 0 else 4, strides=2, padding="same", activation="relu", name=f"conv{i}")(h)
    for j in range(cfg.res_blocks if cfg.arch == "resnet" else 0):
        r = layers.Conv2D(cfg.conv_filters[-1], 3, padding="same", activation="relu", name=f"res{j}a")(h)
        h = layers.Add(name=f"res{j}")([h, layers.Conv2D(cfg.conv_filters[-1], 1, name=f"res{j}b")(r)])
    z_e = layers.Conv2D(cfg.latent_dim, 1, name="z_e", dtype="float32")(layers.Activation("relu", name="pre_z")(h))
    return keras.Model(images, z_e, name="grid_encoder")


def _conv_decoder(cfg: ModelConfig, grid) -> keras.Model:
    """Code vectors [B, h, w, D] -> the likelihood's parameters [B, H, W, C] (the encoder mirrored)."""
    filters = list(cfg.conv_filters)
    z_q = keras.Input((*grid, cfg.latent_dim), name="z_q")
    h = layers.Conv2D(filters[-1], 3, padding="same", activation="relu", name="unproject")(z_q)
    for j in range(cfg.res_blocks if cfg.arch == "resnet" else 0):
        r = layers.Conv2D(filters[-1], 3, padding="same", activation="relu", name=f"dres{j}a")(h)
        h = layers.Add(name=f"dres{j}")([h, layers.Conv2D(filters[-1], 1, name=f"dres{j}b")(r)])
    for i, f in enumerate(reversed(filters[:-1])):
        h = layers.Conv2DTranspose(f, 4, strides=2, padding="same", activation="relu", name=f"deconv{i}")(h)

    def raw(name):
        return upsampled_output(h, cfg.image_shape, name)

    return keras.Model(z_q, likelihoods.for_config(cfg).head(raw, cfg, z_q), name="grid_decoder")


def gelu(x):
    """GELU, x·Φ(x) = ½x(1 + erf(x/√2)) (Hendrycks & Gimpel 2016), written with ``erf`` so that
    the exported prior converts to TFLite builtins and to ONNX (whose opsets lack the ``Erfc``
    of Keras's exact GELU); equal to ``keras.activations.gelu(approximate=False)`` to float32
    rounding."""
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


class CodePrior(keras.Model):
    """p(k) over a code grid, autoregressive in raster order: a causal transformer.

    Input: codes int32 [B, h, w]. Output: logits float32 [B, h, w, K], where the logits at
    position i depend only on the codes at positions < i (a start token is prepended and the
    last code dropped; self-attention is causally masked), so that

        log p(k) = Σ_i log softmax(logits_i)[k_i]

    is the exact log-probability of the grid, and sampling fills the grid one position at a
    time (h·w calls). Vaswani et al. 2017 (decoder blocks, pre-norm), as the image
    transformers of Parmar et al. 2018 and Esser et al. 2021 use over VQ codes.
    """

    def __init__(self, codebook_size: int, grid, width: int = 128, layers_: int = 3, heads: int = 4, **kwargs):
        super().__init__(**kwargs)
        self.codebook_size, self.grid = int(codebook_size), tuple(int(g) for g in grid)
        self.length = self.grid[0] * self.grid[1]
        self.embed = layers.Embedding(self.codebook_size + 1, width, name="embed")  # index K: the start token
        self.position = layers.Embedding(self.length, width, name="position")
        self.blocks = []
        for i in range(layers_):
            self.blocks.append((layers.LayerNormalization(name=f"ln{i}a"),
                                layers.MultiHeadAttention(heads, width // heads, name=f"attn{i}"),
                                layers.LayerNormalization(name=f"ln{i}b"),
                                layers.Dense(4 * width, name=f"mlp{i}a"),
                                layers.Dense(width, name=f"mlp{i}b")))
        self.norm = layers.LayerNormalization(name="ln_out")
        self.logits = layers.Dense(self.codebook_size, name="logits", dtype="float32")

    def call(self, codes, training=False):
        b = ops.shape(codes)[0]
        seq = ops.reshape(ops.cast(codes, "int32"), (b, self.length))
        start = ops.full((b, 1), self.codebook_size, dtype="int32")
        shifted = ops.concatenate([start, seq[:, :-1]], axis=1)
        h = self.embed(shifted) + self.position(ops.arange(self.length))[None]
        for ln_a, attn, ln_b, mlp_a, mlp_b in self.blocks:
            a = ln_a(h)
            h = h + attn(a, a, use_causal_mask=True, training=training)
            h = h + mlp_b(gelu(mlp_a(ln_b(h))))
        logits = self.logits(self.norm(h))
        return ops.reshape(logits, (b, *self.grid, self.codebook_size))

    def log_prob(self, codes):
        """log p(k) of grids int32 [B, h, w]: float32 [B], nats."""
        logits = self(codes)
        return tf.reduce_sum(tfd.Categorical(logits=logits).log_prob(tf.cast(codes, tf.int32)), axis=[1, 2])

    def sample(self, n: int, seed: int = 0, batch: int = 256) -> np.ndarray:
        """n grids drawn position by position (h·w prior calls per batch) by
        :func:`tfvae.lite.sample_code_grids`, the sampler the exported prior uses on devices
        (the same grids for the same seed): int32 [n, h, w]."""
        from ..lite import sample_code_grids

        return sample_code_grids(lambda codes: self(tf.constant(codes)).numpy(), n, self.grid, seed, batch)


class VQVAE(FamilyModel):
    """The VQ-VAE of this module's docstring.

    Args:
        config: ``image_shape``, ``latent_dim`` (D, the code vectors' size), ``conv_filters``
            (the stride-2 convolutions: the grid is H/2^n × W/2^n), ``codebook_size`` (K),
            ``commitment`` (β_c), ``codebook_decay`` (γ), ``prior_width``, ``prior_layers``,
            the likelihood.
        seed: seed of the codebook's initialisation and of the restarts' draws.
        (the other keywords of :func:`tfvae.models.build_model` do not apply.)

    Attributes:
        encoder: Keras model images [B, H, W, C] -> {"loc": z_e flattened [B, h·w·D],
            "scale": zeros} (the continuous code the latent-space commands use).
        decoder: Keras model code vectors [B, h, w, D] -> the likelihood's parameters.
        quantizer: :class:`VectorQuantizer`.
        prior_net: :class:`CodePrior`, outside this model's weights (its own file).
        grid: (h, w).
    """

    metric_names = ("loss", "reconstruction", "commitment", "perplexity", "codes_in_use")
    checkpoint_monitor = "val_reconstruction"
    conditional = False

    def __init__(self, config: ModelConfig, seed=None, **options):
        kwargs = {k: v for k, v in options.items() if k in ("name", "dtype")}
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=kwargs.pop("name", config.model), **kwargs)
        if config.image_shape is None:
            raise ValueError("ModelConfig.image_shape must be set before building a model")
        self.config = config
        self.likelihood_object = likelihoods.for_config(config)
        self.grid = grid_shape(config.image_shape, len(config.conv_filters))
        self.grid_encoder = _conv_encoder(config)
        self.decoder = _conv_decoder(config, self.grid)
        self.quantizer = VectorQuantizer(config.codebook_size, config.latent_dim, config.codebook_decay, seed=seed,
                                         name="quantizer")
        prior = CodePrior(config.codebook_size, self.grid, config.prior_width, config.prior_layers, name="prior")
        prior(tf.zeros([1, *self.grid], tf.int32))
        # Not tracked as part of this model: the autoencoder's steps and checkpoints leave it
        # alone; it is trained after them and saved on its own (fit_artifacts, PRIOR_FILE).
        object.__setattr__(self, "prior_net", prior)
        #: False until the prior is trained (after the epochs) or loaded: samples drawn before
        #: then (the per-epoch figures) draw every code uniformly instead.
        self.prior_fitted = False
        images = keras.Input(tuple(config.image_shape), name="images")
        flat = layers.Flatten(name="flat_z_e")(self.grid_encoder(images))
        # The latent-space commands read {"loc", "scale"}: the point-mass posterior has no scale (0).
        self.encoder = keras.Model(images, {"loc": flat, "scale": ops.zeros_like(flat)}, name="encoder")
        self.commitment = float(config.commitment)
        self.seed_generator = keras.random.SeedGenerator(seed, name="restarts")
        self._make_trackers()

    # ---- shapes ---------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        """h·w·D: the size of the flattened continuous code z_e."""
        return self.grid[0] * self.grid[1] * self.config.latent_dim

    @property
    def num_classes(self) -> int:
        return 0

    def _with_labels(self, inputs, labels):
        return tf.cast(inputs, tf.float32)  # not conditional: the encoder takes the images alone

    def _grid(self, z_flat):
        return tf.reshape(tf.cast(z_flat, tf.float32), [-1, *self.grid, self.config.latent_dim])

    # ---- the model --------------------------------------------------------------------
    def call(self, x, training=False):
        return self.decoder(self.quantizer(self.grid_encoder(x, training=training)), training=training)

    def codes(self, x, batch_size: int = 1000) -> np.ndarray:
        """The code grids of images [N, H, W, C], encoded in batches: int32 [N, h, w]."""
        out = [self.quantizer.indices(self.grid_encoder(tf.constant(x[i:i + batch_size]))).numpy()
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, *self.grid), np.int32)

    def decode_codes(self, codes):
        """E[x | z_q = e_k] for code grids int [B, h, w]: float32 [B, H, W, C]."""
        params = self.decoder(self.quantizer.lookup(tf.cast(codes, tf.int32)), training=False)
        return self.likelihood_object.mean(params)

    def encode_mean(self, x, labels=None):
        """The encoder's continuous output z_e, flattened: float32 [B, h·w·D]."""
        return self.encoder(tf.cast(x, tf.float32), training=False)["loc"]

    def decode_mean(self, z, labels=None):
        """Quantize z (flattened z_e [B, h·w·D], any continuous code) and decode the
        likelihood mean: float32 [B, H, W, C]."""
        return self.decode_codes(self.quantizer.indices(self._grid(z)))

    def likelihood(self, z, labels=None, training=False):
        """p(x | z_q(z)) for flattened codes z [B, h·w·D] (quantized first)."""
        z_q = self.quantizer.lookup(self.quantizer.indices(self._grid(z)))
        return self.likelihood_object.distribution(self.decoder(z_q, training=training))

    def sample_prior(self, n: int, seed: int = 0) -> np.ndarray:
        """n grids drawn from the learned prior (:meth:`CodePrior.sample`), as their code
        vectors flattened: float32 [n, h·w·D] (what :meth:`decode_mean` takes). Before the
        prior is fitted (the per-epoch figures), every code uniformly (:meth:`sample_uniform`)."""
        if not self.prior_fitted:
            return self.sample_uniform(n, seed)
        codes = self.prior_net.sample(n, seed)
        return self.quantizer.lookup(tf.constant(codes)).numpy().reshape(n, -1)

    def sample_uniform(self, n: int, seed: int = 0) -> np.ndarray:
        """n grids with every code drawn uniformly (the prior van den Oord et al. 2017 train
        with), as flattened code vectors: float32 [n, h·w·D]."""
        codes = np.random.default_rng(seed).integers(0, self.config.codebook_size, (n, *self.grid)).astype(np.int32)
        return self.quantizer.lookup(tf.constant(codes)).numpy().reshape(n, -1)

    # ---- objective ------------------------------------------------------------------
    def losses_for(self, x, labels=None, eps=None, training=False, weight=None):
        """Named terms, batch means: ``loss`` = ``reconstruction`` (−log p(x|z_q), nats) +
        β_c·``commitment`` (‖z_e − sg(z_q)‖² summed over the grid); ``perplexity``
        exp(H) of the batch's code frequencies; ``codes_in_use`` the share of the codebook with
        N_k ≥ :data:`RESTART_BELOW`. With ``training`` the codebook takes one moving-average
        step (:meth:`VectorQuantizer.update`)."""
        x = tf.cast(x, tf.float32)
        z_e = self.grid_encoder(x, training=training)
        indices = self.quantizer.indices(z_e)
        z_q = self.quantizer.lookup(indices)
        straight = z_e + tf.stop_gradient(z_q - z_e)
        params = self.decoder(straight, training=training)
        reconstruction = -tf.reduce_mean(self.likelihood_object.distribution(params).log_prob(x))
        commitment = tf.reduce_mean(tf.reduce_sum((z_e - tf.stop_gradient(z_q)) ** 2, axis=[1, 2, 3]))
        freq = tf.reduce_mean(tf.one_hot(tf.reshape(indices, [-1]), self.config.codebook_size), 0)
        perplexity = tf.exp(-tf.reduce_sum(freq * tf.math.log(freq + 1e-10)))
        if training:
            seed = keras.random.randint((2,), 0, 2 ** 30, seed=self.seed_generator, dtype="int32")
            self.quantizer.update(z_e, indices, seed)
        in_use = tf.reduce_mean(tf.cast(tf.convert_to_tensor(self.quantizer.cluster_size) >= RESTART_BELOW,
                                        tf.float32))
        return {"loss": reconstruction + self.commitment * commitment, "reconstruction": reconstruction,
                "commitment": commitment, "perplexity": perplexity, "codes_in_use": in_use}

    def log_weights(self, x, eps, labels=None):
        """The evaluation's importance weights (``tfvae.evaluate``): the posterior is the point
        mass at z_q(x), so every one of the K samples has log w = log p(x|z_q) + log p(z_q)
        (the prior's exact log-probability of the grid). Returns (log_w, log_lik) float32
        [K, B], and the flattened z_e [B, h·w·D] with a zero scale."""
        x = tf.cast(x, tf.float32)
        z_e = self.grid_encoder(x)
        indices = self.quantizer.indices(z_e)
        log_lik = self.likelihood_object.distribution(self.decoder(self.quantizer.lookup(indices))).log_prob(x)
        log_prior = self.prior_net.log_prob(indices)
        k = tf.shape(eps)[0]
        tile = lambda v: tf.broadcast_to(v[None], [k, tf.shape(v)[0]])  # noqa: E731
        flat = tf.reshape(z_e, [tf.shape(x)[0], -1])
        return tile(log_lik + log_prior), tile(log_lik), flat, tf.zeros_like(flat)

    # ---- export ---------------------------------------------------------------------
    def export_archives(self, batch=None) -> dict:
        """SavedModel archives (``tfvae.export``), every graph tensor in, tensor out:

        * ``decoder`` ``serving_default``: ``codes`` int32 [B, h, w] -> ``images`` float32
          [B, H, W, C] (the likelihood mean, in [0, 1]) and the likelihood's parameters;
        * ``encoder`` ``serving_default``: ``images`` [B, H, W, C] -> ``codes`` int32 [B, h, w]
          and ``z_e`` float32 [B, h, w, D];
        * ``prior`` ``serving_default``: ``codes`` int32 [B, h, w] -> ``logits`` float32
          [B, h, w, K], position i's logits given the codes before it (sampling calls it h·w
          times, :func:`tfvae.lite.sample_code_grids`).
        """
        decoder, encoder, prior = (keras.export.ExportArchive() for _ in range(3))
        decoder.track(self.decoder)
        decoder.track(self.quantizer)
        encoder.track(self.grid_encoder)
        encoder.track(self.quantizer)
        prior.track(self.prior_net)
        h, w = self.grid

        def decode(codes):
            params = self.decoder(self.quantizer.lookup(codes), training=False)
            return {"images": tf.clip_by_value(self.likelihood_object.mean(params), 0.0, 1.0), **params}

        def encode(images):
            z_e = self.grid_encoder(images, training=False)
            return {"codes": self.quantizer.indices(z_e), "z_e": z_e}

        codes_spec = tf.TensorSpec([batch, h, w], tf.int32, name="codes")
        decoder.add_endpoint("serving_default", decode, input_signature=[codes_spec])
        encoder.add_endpoint("serving_default", encode, input_signature=[
            tf.TensorSpec([None, *self.config.image_shape], tf.float32, name="images")])
        prior.add_endpoint("serving_default", lambda codes: {"logits": self.prior_net(codes)},
                           input_signature=[codes_spec])
        return {"decoder": decoder, "encoder": encoder, "prior": prior}

    def export_card(self) -> dict:
        """What the model card records for a device: the decoder's input and the prior."""
        return {"decoder_input": {"name": "codes", "shape": list(self.grid), "dtype": "int32"},
                "prior": {"kind": "autoregressive", "grid": list(self.grid),
                          "codebook_size": self.config.codebook_size, "file": "prior.tflite",
                          "onnx_file": "prior.onnx",
                          "description": f"causal transformer over the {self.grid[0]}×{self.grid[1]} code grid in "
                                         "raster order: codes [B, h, w] -> logits [B, h, w, K]; draw position i "
                                         "from softmax(logits[:, i]) after filling positions < i"}}

    # ---- after training: the prior --------------------------------------------------
    def fit_artifacts(self, data, cfg, run_dir, verbose: bool = True) -> None:
        """Train the prior on the training split's codes (binarized once, with the run's
        binarization seed), keeping the weights with the lowest validation NLL of the codes;
        write them to ``checkpoints/prior.weights.h5`` and one row per epoch to
        ``prior_metrics.csv`` (``loss``, ``val_loss``: nats per grid; ``seconds``: the epoch's
        wall time). A progress bar with the time left on a terminal, a line per epoch otherwise."""
        from ..config import atomic_write_text
        from ..data import binarize_fixed
        from ..training.callbacks import save_weights_atomically

        train_codes = self.codes(binarize_fixed(data.train, cfg.data.binarization, cfg.data.binarization_seed))
        val_codes = self.codes(binarize_fixed(data.validation, cfg.data.binarization, cfg.data.binarization_seed))
        prior = self.prior_net
        t = cfg.train
        steps = max(1, math.ceil(len(train_codes) / t.batch_size)) * t.prior_epochs
        prior.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            t.prior_learning_rate, steps, alpha=0.01)), loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True))
        keras.utils.set_random_seed(t.seed)
        best, rows, cells = math.inf, ["epoch,loss,val_loss,seconds"], self.grid[0] * self.grid[1]
        best_weights = prior.get_weights()
        bar = 1 if verbose and sys.stdout.isatty() else 0
        for epoch in range(t.prior_epochs):
            start = time.perf_counter()
            history = prior.fit(train_codes, train_codes, batch_size=t.batch_size, epochs=1, verbose=bar,
                                shuffle=True)
            val = float(prior.evaluate(val_codes, val_codes, batch_size=500, verbose=0)) * cells
            loss, seconds = float(history.history["loss"][0]) * cells, time.perf_counter() - start
            rows.append(f"{epoch},{loss:.6f},{val:.6f},{seconds:.3f}")
            if verbose:
                print(f"prior epoch {epoch + 1}/{t.prior_epochs}: −log p(codes) {loss:.2f} nats, "
                      f"validation {val:.2f}; {seconds:.1f} s", flush=True)
            if val < best:
                best, best_weights = val, prior.get_weights()
        prior.set_weights(best_weights)
        self.prior_fitted = True
        save_weights_atomically(prior, Path(run_dir) / "checkpoints" / PRIOR_FILE)
        atomic_write_text(Path(run_dir) / "prior_metrics.csv", "\n".join(rows) + "\n")

    def restore_artifacts(self, run_dir) -> None:
        """Load ``checkpoints/prior.weights.h5`` (written by :meth:`fit_artifacts`).

        Raises:
            TfvaeError: it is missing (a run interrupted before its prior was trained).
        """
        path = Path(run_dir) / "checkpoints" / PRIOR_FILE
        if not path.is_file():
            raise TfvaeError(f"{run_dir} is not a complete run: checkpoints/{PRIOR_FILE} (its learned prior) is missing")
        try:
            self.prior_net.load_weights(str(path))
            self.prior_fitted = True
        except Exception as exc:  # h5py / keras raise many types for a bad file
            raise TfvaeError(f"{path}: cannot load weights ({' '.join(str(exc).split())[:200]})") from None


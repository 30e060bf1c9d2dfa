"""The VAE as a Keras 3 model with its own ``train_step`` / ``test_step``.

Loss per batch (nats per image, averaged over the batch):

    loss = reconstruction + w_t · KL,   reconstruction = −E_q[log p(x|z)],
    KL = KL(q(z|x) ‖ p(z))  (analytic),  w_t = β · min(1, t / warm-up steps)

With β = 1 and no warm-up, loss = −ELBO (Kingma & Welling 2013, eq. 10); β ≠ 1 is the
β-VAE objective (Higgins et al. 2017, eq. 4). ``neg_elbo`` = reconstruction + KL is
tracked whatever β is, so runs with different β stay comparable.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from . import distributions as dist
from .config import ModelConfig
from .networks import build_decoder, build_encoder
from .objectives import elbo_terms

METRIC_NAMES = ("loss", "neg_elbo", "reconstruction", "kl", "kl_weight")


class VAE(keras.Model):
    """Variational autoencoder with a diagonal-Gaussian posterior and a N(0, I) prior.

    Args:
        config: the model configuration (``image_shape`` must be set).
        beta: KL weight β ≥ 0.
        kl_warmup_steps: the KL weight rises linearly from 0 to β over this many
            optimizer steps (0: no warm-up).
        mc_samples: reparameterized samples of z per image in the reconstruction term.
        seed: seed of the z noise (a ``keras.random.SeedGenerator``).

    Attributes:
        encoder: Keras model images [B, H, W, C] -> {"loc", "scale"} [B, D].
        decoder: Keras model z [B, D] -> likelihood parameters [B, H, W, C].

    Calling the model on images [B, H, W, C] returns the decoder's parameters at the
    posterior mean (a deterministic reconstruction).
    """

    def __init__(self, config: ModelConfig, beta: float = 1.0, kl_warmup_steps: int = 0,
                 mc_samples: int = 1, seed=None, **kwargs):
        super().__init__(name=kwargs.pop("name", "vae"), **kwargs)
        if config.image_shape is None:
            raise ValueError("ModelConfig.image_shape must be set before building a VAE")
        self.config = config
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.mc_samples = int(mc_samples)
        self.encoder = build_encoder(config)
        self.decoder = build_decoder(config)
        self.seed_generator = keras.random.SeedGenerator(seed, name="z_noise")
        self.trackers = {name: keras.metrics.Mean(name=name) for name in METRIC_NAMES}

    @property
    def metrics(self):
        # Returned here so that Keras resets the trackers at the start of each epoch.
        return list(self.trackers.values())

    # ---- the three distributions ----------------------------------------------------
    @property
    def latent_dim(self) -> int:
        """D, the dimension of z."""
        return self.config.latent_dim

    def posterior(self, x, training=False):
        """q(z|x) for images x [B, H, W, C]: MultivariateNormalDiag, batch [B], event [D]."""
        params = self.encoder(x, training=training)
        return dist.posterior(params["loc"], params["scale"])

    def prior(self):
        """p(z) = N(0, I_D)."""
        return dist.prior(self.latent_dim)

    def likelihood(self, z, training=False):
        """p(x|z) for z [..., D] (any leading shape): Independent, event [H, W, C]."""
        lead = tf.shape(z)[:-1]
        params = self.decoder(tf.reshape(z, [-1, self.latent_dim]), training=training)
        params = {k: tf.reshape(v, tf.concat([lead, tf.shape(v)[1:]], 0)) for k, v in params.items()}
        return dist.likelihood(params, self.config.likelihood, self.config.sigma)

    def decode_mean(self, z):
        """E[x|z] in [0, 1] for z [B, D]: float32 [B, H, W, C]."""
        return dist.likelihood_mean(self.decoder(z, training=False), self.config.likelihood)

    def call(self, x, training=False):
        params = self.encoder(x, training=training)
        return self.decoder(params["loc"], training=training)

    # ---- objective ------------------------------------------------------------------
    def kl_weight(self):
        """w_t = β · min(1, (t+1) / warm-up steps), t the optimizer's step count."""
        if self.kl_warmup_steps <= 0 or self.optimizer is None:
            return tf.constant(self.beta, tf.float32)
        step = tf.cast(self.optimizer.iterations + 1, tf.float32)
        return self.beta * tf.minimum(1.0, step / float(self.kl_warmup_steps))

    def elbo_terms(self, x, training=False, samples=None, eps=None):
        """(reconstruction, kl) per image, float32 [B] each, in nats (see objectives.elbo_terms).

        ``eps`` [B, S, D]: standard-normal noise per image (the training pipeline supplies
        it, so each image's noise is the same whichever device or replica it lands on);
        when None, S = ``samples`` (default ``mc_samples``) draws come from the model's
        seed generator.
        """
        q = self.posterior(x, training=training)
        if eps is None:
            s = self.mc_samples if samples is None else samples
            eps = keras.random.normal((s, tf.shape(x)[0], self.latent_dim), seed=self.seed_generator)
        else:
            eps = tf.transpose(eps, [1, 0, 2])  # [S, B, D]
        return elbo_terms(x, q, self.prior(), lambda z: self.likelihood(z, training=training), eps)

    def _update(self, loss, reconstruction, kl, weight):
        values = {"loss": loss, "neg_elbo": reconstruction + kl, "reconstruction": reconstruction,
                  "kl": kl, "kl_weight": weight}
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}

    def train_step(self, data):
        x, eps = data if isinstance(data, (tuple, list)) else (data, None)
        with tf.GradientTape() as tape:
            reconstruction, kl = self.elbo_terms(x, training=True, eps=eps)
            reconstruction, kl = tf.reduce_mean(reconstruction), tf.reduce_mean(kl)
            weight = self.kl_weight()
            loss = reconstruction + weight * kl
            # Under tf.distribute each replica sees batch/R images; dividing its mean by R
            # makes the summed gradient equal the single-device gradient of the global batch.
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._update(loss, reconstruction, kl, weight)

    def test_step(self, data):
        x = data[0] if isinstance(data, (tuple, list)) else data
        reconstruction, kl = self.elbo_terms(x, training=False)
        reconstruction, kl = tf.reduce_mean(reconstruction), tf.reduce_mean(kl)
        weight = self.kl_weight()
        return self._update(reconstruction + weight * kl, reconstruction, kl, weight)


def build_model(config: ModelConfig, beta=1.0, kl_warmup_steps=0, mc_samples=1, seed=None) -> VAE:
    """Construct a :class:`VAE` and build its weights (one call on a zero image)."""
    model = VAE(config, beta=beta, kl_warmup_steps=kl_warmup_steps, mc_samples=mc_samples, seed=seed)
    model(tf.zeros([1] + list(config.image_shape)))
    return model

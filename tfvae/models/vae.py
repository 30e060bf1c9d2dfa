"""The model family as Keras 3 models with their own ``train_step`` / ``test_step``.

VAE loss per batch (nats per image, averaged over the batch), objective ``elbo``:

    loss = reconstruction + w_t · KL,   reconstruction = −E_q[log p(x|z)],
    KL = KL(q(z|x) ‖ p(z)),  w_t = β · min(1, t / warm-up steps)

With β = 1 and no warm-up, loss = −ELBO (Kingma & Welling 2013, eq. 10); β ≠ 1 is the
β-VAE objective (Higgins et al. 2017, eq. 4). KL is analytic for the standard prior and a
Monte-Carlo estimate log q(z|x) − log p(z) on the same samples for learned priors.
Objective ``iwae``: loss = −log (1/K) Σ_k w_k with log w_k = log p(x|z_k) + w_t·(log p(z_k) −
log q(z_k|x)) (Burda et al. 2015, eq. 8; at w_t = 1 exactly their bound). ``neg_elbo`` =
reconstruction + KL is tracked whatever the objective and β, so runs stay comparable.

* :class:`VAE` (``--model vae``) and its conditional form (``--model cvae``: encoder and
  decoder also take the one-hot label, Sohn et al. 2015, section 4).
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from .. import distributions as dist
from .. import likelihoods
from ..config import ModelConfig
from ..networks import build_decoder, build_encoder, is_conditional
from ..objectives import elbo_terms, iw_log_likelihood
from .base import FamilyModel

METRIC_NAMES = ("loss", "neg_elbo", "reconstruction", "kl", "kl_weight")


class VAE(FamilyModel):
    """Variational autoencoder with a diagonal-Gaussian posterior.

    Args:
        config: the model configuration (``image_shape`` must be set; for ``cvae``,
            ``num_classes`` too).
        beta: KL weight β ≥ 0.
        kl_warmup_steps: the KL weight rises linearly from 0 to β over this many
            optimizer steps (0: no warm-up).
        mc_samples: reparameterized samples of z per image in the reconstruction term.
        objective: ``elbo`` or ``iwae``.
        iw_samples: K of the ``iwae`` objective.
        free_bits: λ nats per dimension (Kingma et al. 2016, eq. 15); 0: off.
        seed: seed of the z noise (a ``keras.random.SeedGenerator``).
        dataset_size: unused (every family takes the same keywords: see ``build_model``).
        encoder, decoder: Keras models to use instead of tfvae's builders, with the same
            inputs and outputs (``{"loc", "scale"}``; the likelihood's parameters).

    Attributes:
        encoder: Keras model images [B, H, W, C] (and labels [B, C] for cvae) ->
            {"loc", "scale"} [B, D].
        decoder: Keras model z [B, D] (and labels) -> likelihood parameters [B, H, W, C].
        checkpoint_monitor: the validation metric that picks the best checkpoint:
            ``val_neg_elbo`` (the unweighted −ELBO) for ``elbo``; ``val_loss`` for ``iwae``,
            which validation computes with KL weight 1 (the unweighted K-sample bound,
            whatever β and the warm-up).

    Calling the model on images [B, H, W, C] (or ``[images, labels]``) returns the
    decoder's parameters at the posterior mean (a deterministic reconstruction).
    """

    def __init__(self, config: ModelConfig, beta: float = 1.0, kl_warmup_steps: int = 0,
                 mc_samples: int = 1, objective: str = "elbo", iw_samples: int = 1, free_bits: float = 0.0,
                 seed=None, dataset_size: int = 1, encoder=None, decoder=None, **kwargs):
        # The model's own computations (distributions, losses) are float32; only the
        # networks built below follow the global dtype policy (mixed precision).
        kwargs.setdefault("dtype", "float32")
        super().__init__(name=kwargs.pop("name", config.model), **kwargs)
        if config.image_shape is None:
            raise ValueError("ModelConfig.image_shape must be set before building a model")
        if is_conditional(config) and config.num_classes < 1:
            raise ValueError("a conditional VAE needs ModelConfig.num_classes >= 1")
        self.config = config
        self.beta = float(beta)
        self.kl_warmup_steps = int(kl_warmup_steps)
        self.mc_samples = int(mc_samples)
        self.objective = objective
        self.iw_samples = int(iw_samples)
        self.free_bits = float(free_bits)
        # Networks other than tfvae's builders may be given (the benchmarks train the keras-io
        # example's networks this way); they must keep the builders' input/output contract.
        self.likelihood_object = likelihoods.for_config(config)  # p(x|z): head, distribution, mean
        self.encoder = encoder if encoder is not None else build_encoder(config)
        self.decoder = decoder if decoder is not None else build_decoder(config)
        self.seed_generator = keras.random.SeedGenerator(seed, name="z_noise")
        self._make_trackers()
        self.checkpoint_monitor = "val_loss" if objective == "iwae" else "val_neg_elbo"
        m = config.prior_components
        d = config.latent_dim
        if config.prior == "mog":
            rng = np.random.default_rng(0 if seed is None else seed)
            self.prior_logits = self.add_weight(name="prior_logits", shape=(m,), initializer="zeros")
            self.prior_loc = self.add_weight(
                name="prior_loc", shape=(m, d),
                initializer=keras.initializers.Constant(rng.standard_normal((m, d)).astype(np.float32)))
            self.prior_raw_scale = self.add_weight(
                name="prior_raw_scale", shape=(m, d), initializer=keras.initializers.Constant(math.log(math.e - 1)))
        elif config.prior == "vamp":
            self.pseudo_inputs_raw = self.add_weight(
                name="pseudo_inputs_raw", shape=(m, *config.image_shape),
                initializer=keras.initializers.RandomNormal(-1.0, 0.5, seed=seed))

    metric_names = METRIC_NAMES

    @property
    def conditional(self) -> bool:
        """True for a conditional VAE (networks take the one-hot label)."""
        return is_conditional(self.config)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    # ---- the three distributions ----------------------------------------------------
    @property
    def latent_dim(self) -> int:
        """D, the dimension of z."""
        return self.config.latent_dim

    def _with_labels(self, inputs, labels):
        inputs = tf.cast(inputs, tf.float32)
        if not self.conditional:
            return inputs
        if labels is None:
            raise ValueError("a conditional VAE needs the labels (one-hot [B, num_classes])")
        return [inputs, tf.cast(labels, tf.float32)]

    def posterior(self, x, labels=None, training=False):
        """q(z|x) for images x [B, H, W, C] (labels one-hot [B, C] for cvae):
        MultivariateNormalDiag, batch [B], event [D]."""
        params = self.encoder(self._with_labels(x, labels), training=training)
        return dist.posterior(params["loc"], params["scale"])

    def pseudo_inputs(self):
        """The VampPrior's pseudo-inputs u_m = sigmoid(raw), float32 [M, H, W, C] in (0, 1)."""
        return tf.sigmoid(self.pseudo_inputs_raw)

    def prior(self):
        """p(z), event [D]: N(0, I); a learned mixture of Gaussians; or the VampPrior
        (1/M) Σ_m q(z|u_m) (Tomczak & Welling 2018, eq. 9)."""
        kind = self.config.prior
        if kind == "standard":
            return dist.prior(self.latent_dim)
        if kind == "mog":
            scale = tf.nn.softplus(self.prior_raw_scale) + self.config.scale_floor
            return dist.mixture_prior(self.prior_logits, self.prior_loc, scale)
        params = self.encoder(self.pseudo_inputs(), training=False)
        m = self.config.prior_components
        return dist.mixture_prior(tf.zeros([m]), params["loc"], params["scale"])

    def prior_mixture(self):
        """p(z) as a Gaussian mixture: (log weights [M], loc [M, D], scale [M, D]) numpy
        float64 (M = 1, loc 0, scale 1 for the standard prior)."""
        kind = self.config.prior
        d = self.latent_dim
        if kind == "standard":
            return np.zeros(1), np.zeros((1, d)), np.ones((1, d))
        p = self.prior()
        log_w = tf.nn.log_softmax(p.mixture_distribution.logits).numpy().astype(np.float64)
        comp = p.components_distribution
        return log_w, comp.mean().numpy().astype(np.float64), comp.stddev().numpy().astype(np.float64)

    def sample_prior(self, n: int, seed: int = 0) -> np.ndarray:
        """n draws z ~ p(z) with numpy's ``default_rng(seed)`` (outside any graph): float32 [n, D]."""
        rng = np.random.default_rng(seed)
        eps = rng.standard_normal((n, self.latent_dim))
        if self.config.prior == "standard":
            return eps.astype(np.float32)
        log_w, loc, scale = self.prior_mixture()
        comp = rng.choice(len(log_w), size=n, p=np.exp(log_w - np.logaddexp.reduce(log_w)))
        return (loc[comp] + scale[comp] * eps).astype(np.float32)

    def likelihood(self, z, labels=None, training=False):
        """p(x|z) for z [..., D] (any leading shape; labels [B, C] broadcast over the
        leading sample axes): Independent, event [H, W, C]."""
        lead = tf.shape(z)[:-1]
        flat = tf.reshape(z, [-1, self.latent_dim])
        if self.conditional:
            labels = tf.cast(labels, tf.float32)
            labels = tf.reshape(tf.broadcast_to(labels, tf.concat([lead, tf.shape(labels)[-1:]], 0)),
                                [-1, self.num_classes])
        params = self.decoder(self._with_labels(flat, labels), training=training)
        params = {k: tf.reshape(v, tf.concat([lead, tf.shape(v)[1:]], 0)) for k, v in params.items()}
        return self.likelihood_object.distribution(params)

    def decode_mean(self, z, labels=None):
        """E[x|z] in [0, 1] for z [B, D] (labels one-hot [B, C] for cvae): float32 [B, H, W, C]."""
        params = self.decoder(self._with_labels(z, labels), training=False)
        return self.likelihood_object.mean(params)

    def encode_mean(self, x, labels=None):
        """The posterior mean E_q[z|x] (the code used for reconstructions): float32 [B, D]."""
        return self.encoder(self._with_labels(x, labels), training=False)["loc"]

    def call(self, inputs, training=False):
        x, labels = (inputs[0], inputs[1]) if isinstance(inputs, (list, tuple)) else (inputs, None)
        if self.conditional and labels is None:
            labels = tf.zeros([tf.shape(x)[0], self.num_classes])
        params = self.encoder(self._with_labels(x, labels), training=training)
        return self.decoder(self._with_labels(params["loc"], labels), training=training)

    # ---- objective ------------------------------------------------------------------
    def kl_weight(self):
        """w_t = β · min(1, (t+1) / warm-up steps), t the optimizer's step count."""
        if self.kl_warmup_steps <= 0 or self.optimizer is None:
            return tf.constant(self.beta, tf.float32)
        step = tf.cast(self.optimizer.iterations + 1, tf.float32)
        return self.beta * tf.minimum(1.0, step / float(self.kl_warmup_steps))

    def _noise(self, x, samples, eps):
        if eps is None:
            return keras.random.normal((samples, tf.shape(x)[0], self.latent_dim), seed=self.seed_generator)
        return tf.transpose(eps, [1, 0, 2])  # [S, B, D]

    def elbo_terms(self, x, labels=None, training=False, samples=None, eps=None):
        """(reconstruction, kl) per image, float32 [B] each, in nats (see objectives.elbo_terms).

        ``eps`` [B, S, D]: standard-normal noise per image (the training pipeline supplies
        it, so each image's noise is the same whichever device or replica it lands on);
        when None, S = ``samples`` (default ``mc_samples``) draws come from the model's
        seed generator. KL is analytic for the standard prior, else the Monte-Carlo
        estimate mean_s [log q(z_s|x) − log p(z_s)].
        """
        q = self.posterior(x, labels, training=training)
        eps = self._noise(x, self.mc_samples if samples is None else samples, eps)
        lik = lambda z: self.likelihood(z, labels, training=training)  # noqa: E731
        if self.config.prior == "standard":
            return elbo_terms(x, q, self.prior(), lik, eps)
        z = q.mean() + q.stddev() * eps
        reconstruction = -tf.reduce_mean(lik(z).log_prob(x), axis=0)
        kl = tf.reduce_mean(q.log_prob(z) - self.prior().log_prob(z), axis=0)
        return reconstruction, kl

    def losses_for(self, x, labels=None, eps=None, training=False, weight=None):
        """The named terms (see :meth:`tfvae.models.base.FamilyModel.losses_for`), float32
        scalars, batch means in nats: ``loss``, ``reconstruction``, ``kl``, ``neg_elbo`` =
        reconstruction + kl (unweighted, whatever β and the objective), ``kl_weight``.

        ``weight``: the KL weight w_t to use (default: :meth:`kl_weight`, i.e. β after the
        warm-up). Validation of the ``iwae`` objective passes 1.0, so the checkpoint is
        picked on the unweighted K-sample bound, not on the warm-up-weighted loss."""
        weight = self.kl_weight() if weight is None else tf.constant(weight, tf.float32)
        if self.objective == "iwae":
            q = self.posterior(x, labels, training=training)
            eps = self._noise(x, self.iw_samples, eps)
            z = q.mean() + q.stddev() * eps  # [K, B, D]
            log_lik = self.likelihood(z, labels, training=training).log_prob(x)  # [K, B]
            log_ratio = self.prior().log_prob(z) - q.log_prob(z)  # log p(z) − log q(z|x)
            bound = iw_log_likelihood(log_lik + weight * log_ratio, axis=0)
            return vae_terms(-tf.reduce_mean(bound), -tf.reduce_mean(log_lik), -tf.reduce_mean(log_ratio), weight)
        reconstruction, kl = self.elbo_terms(x, labels, training=training, eps=eps)
        reconstruction, kl_mean = tf.reduce_mean(reconstruction), tf.reduce_mean(kl)
        kl_term = kl_mean
        if self.free_bits > 0:
            kl_term = self.free_bits_kl(self.posterior(x, labels, training=training))
        return vae_terms(reconstruction + weight * kl_term, reconstruction, kl_mean, weight)

    def validation_weight(self):
        """1.0 for the ``iwae`` objective (its ``loss`` is then the unweighted K-sample bound,
        which picks the checkpoint); None (β after the warm-up) for the ELBO, whose
        ``neg_elbo`` picks it."""
        return 1.0 if self.objective == "iwae" else None

    def free_bits_kl(self, q):
        """Σ_d max(λ, KL_d), KL_d = the batch mean of KL(q(z_d|x) ‖ N(0, 1)) in nats
        (Kingma et al. 2016, eq. 15): no dimension's KL term falls below λ."""
        per_dim = tf.reduce_mean(dist.kl_per_dimension(q.mean(), q.stddev()), axis=0)
        return tf.reduce_sum(tf.maximum(per_dim, self.free_bits))


def vae_terms(loss, reconstruction, kl, weight) -> dict:
    """The VAE families' named terms: ``loss``, ``reconstruction``, ``kl``, ``neg_elbo`` =
    reconstruction + kl, ``kl_weight`` (float32 scalars, nats per image)."""
    return {"loss": loss, "neg_elbo": reconstruction + kl, "reconstruction": reconstruction, "kl": kl,
            "kl_weight": weight}

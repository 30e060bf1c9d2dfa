"""Top-down hierarchical VAE (``--model hvae``): L groups of latent variables z_1 … z_L.

Generative model, top group first (Sønderby et al. 2016, LVAE, eq. 1; Vahdat & Kautz 2020,
NVAE, eq. 1; Child 2021, VDVAE):

    p(z_1) = N(0, I),   p(z_l | z_<l) = N(μ_l^p(h_l), σ_l^p(h_l)),   p(x | z_1..L) = p(x | h_L+1)

where h is a deterministic top-down state: h_1 a learned constant, h_l+1 = block_l(h_l +
merge_l(z_l)) (residual). The posterior follows the same top-down order, each group
conditioned on the image through a bottom-up feature a_l and on the groups above
through h_l, parameterized relative to the prior (NVAE, section 3.2):

    q(z_l | x, z_<l) = N(μ_l^p + Δμ_l,  σ_l^p · Δσ_l),   (Δμ_l, Δσ_l) = f_l(h_l, a_l)

so, per dimension, KL(q ‖ p) = ½ (Δμ²/σ_p² + Δσ² − log Δσ² − 1) (NVAE, section 3.2), analytic
per group. The mean offset is additive, as in NVAE: were it scaled by σ_p too, the KL would
not depend on σ_p, and early in training, while the decoder ignores z, shrinking σ_p
removes the noise at no KL cost and switches the group off (measured: after 8 epochs 2 of 5 groups
carried no information). With ε_l ~ N(0, I):

* a sample of the prior is z_l = μ_l^p + σ_l^p · ε_l, so the generative network is a
  deterministic function of the concatenated noise ε = (ε_1, …, ε_L) ~ N(0, I_D),
  D = Σ_l d_l. That function is :attr:`HierarchicalVAE.decoder` (input ``z`` = ε
  [B, D]); exported, sampled and traversed like the one-layer VAE's decoder, with
  builtin ops only (dense, add, multiply, softplus).
* a sample of the posterior is z_l = μ_l^p + Δμ_l + σ_l^p · Δσ_l · ε_l: in the noise's
  coordinates ε = (z − μ^p)/σ^p, the posterior is N(Δμ_l/σ_l^p, Δσ_l).

The ELBO is E_q[log p(x|z)] − Σ_l E_q[KL_l] (LVAE eq. 4 / NVAE eq. 2, the KL of each group
analytic given the samples of the groups above), and the importance weight of a sample is
log p(x|z) + Σ_l [log p(z_l|z_<l) − log q(z_l|x, z_<l)] (Burda et al. 2015, eq. 8, with the
hierarchical proposal q(z_1..L|x)). Free bits apply per vector group: max(λ·d_l, KL_l) (Kingma et
al. 2016, eq. 15; NVAE and IAF apply it per group).

Latent maps (``group_maps``, NVAE section 3.1; VDVAE): below the vector groups, groups whose
variables are maps of h × w positions and c channels at the convolutional decoder's
resolutions (MNIST: 7×7, then 14×14). The top-down state becomes a map there (dense
projection, then stride-2 transposed convolutions between resolutions); a map group's prior
and posterior parameters are 3×3 convolutions of the state (the posterior's also of the
encoder trunk's feature map at that resolution), each position and channel a Gaussian, so
its KL and log-densities are sums over positions and channels. The output network is then
the decoder's last stride-2 layer on the finest map.

Shapes: group l holds d_l dimensions, ``group_dims[l]`` for a vector group and h·w·c for a
map (top group first, :func:`tfvae.config.latent_group_sizes`); the flat noise and the
latent space exposed to ``sample``/``traverse``/``export`` are float32 [B, D], D = Σ d_l, a
map's slice laid out [h, w, c] row-major.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from keras import layers, ops

from .. import likelihoods
from ..config import ModelConfig, group_map_shapes, latent_group_sizes
from ..flows import IAFStep
from ..networks import PositiveScale, build_decoder, build_trunk, upsampled_output
from ..objectives import iw_log_likelihood
from .vae import VAE, vae_terms

tfd = tfp.distributions


def group_slices(group_dims):
    """[(start, stop)] of each group in the flat latent vector, top group first."""
    edges = np.cumsum([0] + list(group_dims))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]



@keras.saving.register_keras_serializable(package="tfvae")
class LearnedConstant(layers.Layer):
    """A trainable vector [W] broadcast over the batch: input [B, ...] -> [B, W] (the
    top-down state h_1 before any latent group)."""

    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)
        self.width = int(width)

    def build(self, input_shape):
        self.value = self.add_weight(name="value", shape=(self.width,), initializer="zeros")

    def call(self, x):
        return ops.broadcast_to(ops.cast(self.value, self.compute_dtype), (ops.shape(x)[0], self.width))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.width)

    def get_config(self):
        return {**super().get_config(), "width": self.width}


class HierarchicalVAE(VAE):
    """The top-down hierarchical VAE of this module's docstring.

    Args: as :class:`tfvae.models.VAE`; ``config.group_dims`` gives the groups (top first;
    ``config.latent_dim`` is their sum) and ``config.hvae_width`` the width of the
    top-down state h and of the bottom-up features. The standard prior, every likelihood,
    the ``elbo`` and ``iwae`` objectives, β, KL warm-up and free bits (per group) apply;
    labels do not (no conditional hierarchy).

    Attributes:
        encoder: Keras model images [B, H, W, C] -> {"loc", "scale"} [B, D], the posterior
            of the noise ε along the mean path (each group's (Δμ_l/σ_l^p, Δσ_l) with the groups
            above at their posterior means): reconstructions, active units and the
            exported encoder use it. The loss and the NLL use the sampled hierarchy
            (:meth:`hierarchy`).
        decoder: Keras model ε [B, D] -> the likelihood's parameters [B, H, W, C] (the
            prior's top-down pass).
        group_dims: d_l per group, top group first.
    """

    def __init__(self, config: ModelConfig, **kwargs):
        dims = [int(d) for d in (config.group_dims or [])]
        maps = group_map_shapes(config)
        sizes = latent_group_sizes(config)
        if len(dims) < 2 or sum(sizes) != config.latent_dim:
            raise ValueError(f"hvae needs >= 2 latent groups summing to latent_dim ({config.latent_dim}), got {sizes}")
        width = int(config.hvae_width)
        # Bottom-up: the trunk, then one residual dense step per group below the top, so
        # the top group reads the most processed features (LVAE, NVAE); a latent map reads
        # the trunk's feature map at its resolution.
        images = keras.Input(tuple(config.image_shape), name="images")
        bu_in = layers.Dense(width, activation="relu", name="bu_in")  # created first: the initializers'
        trunk = build_trunk(config)  # seeds are drawn in creation order, as before latent maps existed
        a = bu_in(trunk(images))
        feats = [a]
        for i in range(len(dims) - 1):
            a = layers.Add(name=f"bu_res{i}")([a, layers.Dense(width, activation="relu", name=f"bu{i}")(a)])
            feats.append(a)
        feats = feats[::-1]  # top group's features first
        if maps:
            levels = len(config.conv_filters)
            stage = keras.Model(trunk.input, [trunk.get_layer(_stage_layer(config, levels - j - 1)).output
                                              for j in range(len(maps))], name="trunk_maps")
            feats += list(stage(images))
        bottom_up = keras.Model(images, feats, name="bottom_up")
        cells = _Cells(config, dims, width, maps)
        if maps:
            h, w, _, f = maps[-1]
            last = keras.Input((h, w, f), name="h")
            up = last  # through the resolutions below the finest map, as the conv decoder does
            for k in range(len(config.conv_filters) - len(maps), 0, -1):
                up = layers.Conv2DTranspose(config.conv_filters[k - 1], 3, strides=2, padding="same", activation="relu",
                                            name=f"out_up{k}")(up)
            output_net = keras.Model(last, likelihoods.for_config(config).head(
                lambda name: upsampled_output(up, tuple(config.image_shape), name), config, last), name="output_net")
        else:
            out_cfg = ModelConfig(**{**vars(config), "latent_dim": width, "group_dims": None})
            output_net = build_decoder(out_cfg)
            output_net.name = "output_net"
        eps = keras.Input((config.latent_dim,), name="z")
        decoder = keras.Model(eps, output_net(cells.prior_pass(eps)), name="decoder")
        loc, scale = cells.mean_path(bottom_up(images))
        encoder = keras.Model(images, {"loc": loc, "scale": scale}, name="encoder")
        super().__init__(config, encoder=encoder, decoder=decoder, **kwargs)
        self.group_dims = sizes
        self.bottom_up, self.cells, self.output_net = bottom_up, cells, output_net

    def hierarchy(self, x, eps, training=False, features=None):
        """One pass of the posterior hierarchy with S samples per image.

        Args:
            x: images float32 [B, H, W, C].
            eps: standard-normal noise float32 [S, B, D].
            features: ``bottom_up(x)`` when already computed.

        Returns:
            Dict of float32: ``log_lik`` log p(x|z) [S, B]; ``kl`` [L, S, B], each group's
            analytic KL(q(z_l|x, z_<l) ‖ p(z_l|z_<l)) in nats given the sampled groups
            above; ``log_p``, ``log_q`` [S, B]: Σ_l log p(z_l|z_<l) and Σ_l log q(z_l|x, z_<l)
            at the samples.
        """
        x = tf.cast(x, tf.float32)
        s, b = tf.shape(eps)[0], tf.shape(x)[0]
        feats = self.bottom_up(x, training=training) if features is None else features
        p_terms, params = self.cells.posterior_pass(feats, tf.reshape(eps, [s * b, self.latent_dim]), training)
        params = self.output_net(params, training=training)
        params = {k: tf.reshape(v, tf.concat([[s, b], tf.shape(v)[1:]], 0)) for k, v in params.items()}
        log_lik = self.likelihood_object.distribution(params).log_prob(x)  # [S, B]
        kls, log_p, log_q = [], 0.0, 0.0
        for term in p_terms:
            kls.append(tf.reshape(term["kl"], [s, b]))
            log_p += tf.reshape(term["log_p"], [s, b])
            log_q += tf.reshape(term["log_q"], [s, b])
        return {"log_lik": log_lik, "kl": tf.stack(kls), "log_p": log_p, "log_q": log_q}

    # ---- objective: VAE's apply_step / evaluate_step call these ---------------------
    def elbo_terms(self, x, labels=None, training=False, samples=None, eps=None):
        """(reconstruction, kl) per image, float32 [B] each, nats: −(1/S) Σ_s log p(x|z_s) and
        (1/S) Σ_s Σ_l KL_l (each group's analytic KL given the sampled groups above)."""
        out = self.hierarchy(x, self._noise(x, self.mc_samples if samples is None else samples, eps), training)
        return -tf.reduce_mean(out["log_lik"], 0), tf.reduce_mean(tf.reduce_sum(out["kl"], 0), 0)

    def losses_for(self, x, labels=None, eps=None, training=False, weight=None):
        """The named terms of :meth:`VAE.losses_for`, batch means in nats.
        Free bits act per vector group: Σ_l max(λ·d_l, KL_l), KL_l the batch mean (a latent
        map's KL has no floor)."""
        weight = self.kl_weight() if weight is None else tf.constant(weight, tf.float32)
        iwae = self.objective == "iwae"
        out = self.hierarchy(x, self._noise(x, self.iw_samples if iwae else self.mc_samples, eps), training)
        reconstruction = -tf.reduce_mean(out["log_lik"])
        if iwae:
            log_ratio = out["log_p"] - out["log_q"]
            bound = iw_log_likelihood(out["log_lik"] + weight * log_ratio, axis=0)
            return vae_terms(-tf.reduce_mean(bound), reconstruction, -tf.reduce_mean(log_ratio), weight)
        per_group = tf.reduce_mean(out["kl"], axis=[1, 2])  # [L]
        kl = tf.reduce_sum(per_group)
        kl_term = kl
        if self.free_bits > 0:
            # The vector groups only: a latent map's h·w·c dimensions would make its floor
            # tens of nats, paid in the ELBO whenever the map needs less.
            floors = [self.free_bits * d if i < len(self.cells.dims) else 0.0 for i, d in enumerate(self.group_dims)]
            kl_term = tf.reduce_sum(tf.maximum(per_group, tf.constant(floors, tf.float32)))
        return vae_terms(reconstruction + weight * kl_term, reconstruction, kl, weight)

    def log_weights(self, x, eps, labels=None):
        """Importance weights of the hierarchical proposal for noise eps [K, B, D]:
        (log_w, log_lik) float32 [K, B], log w = log p(x|z) + Σ_l [log p(z_l|z_<l) −
        log q(z_l|x, z_<l)]; the mean-path posterior (loc, scale) [B, D]; the groups'
        KLs [L, K, B]."""
        features = self.bottom_up(tf.cast(x, tf.float32))
        out = self.hierarchy(x, eps, features=features)
        loc, scale = self.cells.mean_path(features)  # the encoder's outputs, from the same features
        return out["log_lik"] + out["log_p"] - out["log_q"], out["log_lik"], loc, scale, out["kl"]

    def free_bits_kl(self, q):
        raise NotImplementedError("HierarchicalVAE applies free bits per group (losses_for)")


def _stage_layer(config: ModelConfig, i: int) -> str:
    """Name of the trunk layer whose output is the feature map after stride-2 stage i."""
    return f"res{i}_out" if config.arch == "resnet" else f"conv{i}"


class _Cells:
    """The top-down cells' layers, shared by the prior pass (the decoder), the mean path
    (the encoder) and the sampled posterior pass (the loss). Written with ``keras.ops`` so
    the same code builds the functional models and runs eagerly / in ``tf.function``.

    Groups are indexed top first: the vector groups (``dims``, state h [N, W]), then the
    latent maps (``maps``, [(h, w, c, f)] coarsest first, state [N, h, w, f]). Entering the
    first map projects the vector state to the coarsest map (dense + reshape, as the
    convolutional decoder does); entering a finer one upsamples the previous map
    (stride-2 transposed convolution). A map group's prior and posterior are 3×3
    convolutions, the posterior's over the state and the bottom-up map concatenated; its
    sample is merged by a 1×1 convolution and followed by a residual 3×3 convolution
    (NVAE, Vahdat & Kautz 2020, figure 2, with one convolution per cell)."""

    def __init__(self, config: ModelConfig, dims, width: int, maps=()):
        self.dims, self.maps, self.width = dims, list(maps), width
        self.shapes = [(d,) for d in dims] + [(h, w, c) for h, w, c, _ in self.maps]
        self.slices = group_slices([int(np.prod(shape)) for shape in self.shapes])
        self.h0 = LearnedConstant(width, name="h0")
        self.prior = [None] + [layers.Dense(2 * d, name=f"prior{i}", dtype="float32") for i, d in enumerate(dims)
                               if i > 0]
        self.posterior = [layers.Dense(2 * d, name=f"posterior{i}", dtype="float32") for i, d in enumerate(dims)]
        self.merge = [layers.Dense(width, name=f"merge{i}") for i in range(len(dims))]
        self.block = [(layers.Dense(width, activation="relu", name=f"block{i}a"), layers.Dense(width, name=f"block{i}b"))
                      for i in range(len(dims))]
        for j, (h, w, c, f) in enumerate(self.maps):
            i = len(dims) + j
            self.prior.append(layers.Conv2D(2 * c, 3, padding="same", name=f"prior{i}", dtype="float32"))
            self.posterior.append(layers.Conv2D(2 * c, 3, padding="same", name=f"posterior{i}", dtype="float32"))
            self.merge.append(layers.Conv2D(f, 1, name=f"merge{i}"))
            self.block.append(layers.Conv2D(f, 3, padding="same", name=f"block{i}"))
        if self.maps:
            h, w, _, f = self.maps[0]
            self.project = layers.Dense(h * w * f, activation="relu", name="map_project")
            self.upsample = [None] + [layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation="relu",
                                                             name=f"map_up{j}")
                                      for j, (_, _, _, f) in enumerate(self.maps) if j > 0]
        self.positive = PositiveScale(config.scale_floor, name="positive", dtype="float32")
        steps = int(getattr(config, "posterior_flows", 0) or 0)
        self.flows = [[IAFStep(d, max(2 * d, 32), reverse=t % 2 == 1, name=f"flow{i}_{t}") for t in range(steps)]
                      for i, d in enumerate(dims)] + [[] for _ in self.maps]

    def flow(self, i, z, h, a):
        """Group i's IAF steps (Kingma et al. 2016) on a posterior sample z [N, d_i], with the
        posterior's inputs (h, a) as context: (z after the steps, Σ log |det| [N]; 0.0
        without flows)."""
        log_det = 0.0
        if self.flows[i]:
            context = ops.concatenate([h, ops.cast(a, h.dtype)], -1)
            for step in self.flows[i]:
                z, step_log_det = step(z, context)
                log_det = log_det + step_log_det
        return z, log_det

    def _map(self, i):
        """Index of group i among the latent maps, or None for a vector group."""
        return i - len(self.dims) if i >= len(self.dims) else None

    def enter(self, i, h):
        """The state group i reads: h itself for a vector group or the map after the
        first; the projection (first map) or the upsampled, cropped map (the others)."""
        j = self._map(i)
        if j is None:
            return h
        rows, cols, _, f = self.maps[j]
        if j == 0:
            return ops.reshape(self.project(h), (-1, rows, cols, f))
        h = self.upsample[j](h)
        return h if tuple(h.shape[1:3]) == (rows, cols) else h[:, :rows, :cols, :]

    def noise(self, i, eps):
        """Group i's slice of the flat noise [N, D], in the group's shape [N, *shape_i]."""
        lo, hi = self.slices[i]
        return ops.reshape(eps[:, lo:hi], (-1,) + tuple(self.shapes[i]))

    def prior_params(self, i, h):
        """(loc, scale) of p(z_i | z_<i), float32 [N, *shape_i]; for the top group the
        scalars (0, 1) of N(0, I), which broadcast."""
        if i == 0:
            return 0.0, 1.0
        loc, raw = ops.split(self.prior[i](h if self._map(i) is None else ops.relu(h)), 2, axis=-1)
        return loc, self.positive(raw)

    def posterior_params(self, i, h, a):
        """(Δμ, Δσ) float32 [N, *shape_i]: q(z_i | x, z_<i) = N(μ^p + Δμ, σ^p Δσ)."""
        d_mu, raw = ops.split(self.posterior[i](ops.concatenate([h, ops.cast(a, h.dtype)], -1)), 2, axis=-1)
        return d_mu, self.positive(raw)

    def posterior_context(self, i, a):
        """The bottom-up half of group i's posterior layer, float32 [B, *shape_i[:-1], 2·c_i]:
        the layer is affine in its concatenated input, W·[h; a] + b = W_h·h + (W_a·a + b), and
        this is W_a·a + b, computed once per image rather than once per sample."""
        layer = self.posterior[i]
        kernel = layer.kernel[..., self.state_channels(i):, :]
        a = tf.cast(a, tf.float32)
        out = ops.matmul(a, kernel) if self._map(i) is None else layer.convolution_op(a, kernel)
        return out + layer.bias

    def posterior_params_given(self, i, h, context, samples):
        """(Δμ, Δσ) of :meth:`posterior_params` from the image's :meth:`posterior_context`
        [B, ...] and the states h [S·B, ...] of its S samples (sample-major), without
        repeating the bottom-up features S times: W_h·h, viewed [S, B, ...], plus the context."""
        layer = self.posterior[i]
        kernel = layer.kernel[..., :self.state_channels(i), :]
        h = tf.cast(h, tf.float32)
        out = ops.matmul(h, kernel) if self._map(i) is None else layer.convolution_op(h, kernel)
        shape = tf.shape(out)
        out = tf.reshape(tf.reshape(out, tf.concat([[samples, -1], shape[1:]], 0)) + context, shape)
        d_mu, raw = ops.split(out, 2, axis=-1)
        return d_mu, self.positive(raw)

    def state_channels(self, i):
        """Channels of the top-down state group i reads (the first inputs of its posterior layer)."""
        j = self._map(i)
        return self.width if j is None else self.maps[j][3]

    def advance(self, i, h, z):
        """h_{i+1} = h' + block(relu(h')), h' = h_i + merge_i(z_i)."""
        h = h + self.merge[i](z)
        if self._map(i) is not None:
            return h + self.block[i](ops.relu(h))
        a, b = self.block[i]
        return h + b(a(ops.relu(h)))

    def prior_pass(self, eps):
        """ε [B, D] -> the state after the last group, z_l = μ^p + σ^p ε_l."""
        h = self.h0(eps)
        for i in range(len(self.shapes)):
            h = self.enter(i, h)
            loc, scale = self.prior_params(i, h)
            h = self.advance(i, h, loc + scale * self.noise(i, eps))
        return h

    def mean_path(self, feats):
        """Bottom-up features (top group's first) -> the posterior of the noise ε,
        (Δμ/σ^p, Δσ) [B, D], with each z_l at q's mean μ^p + Δμ."""
        h = self.h0(feats[0])
        mus, sigmas = [], []
        for i, (lo, hi) in enumerate(self.slices):
            h = self.enter(i, h)
            loc, scale = self.prior_params(i, h)
            d_mu, d_sigma = self.posterior_params(i, h, feats[i])
            if self.flows[i]:  # the flow of the base posterior's mean, in the noise's coordinates
                z, _ = self.flow(i, loc + d_mu, h, feats[i])
                mus.append(ops.reshape((z - loc) / scale, (-1, hi - lo)))
            else:
                z = loc + d_mu
                mus.append(ops.reshape(d_mu / scale, (-1, hi - lo)))
            sigmas.append(ops.reshape(d_sigma, (-1, hi - lo)))
            h = self.advance(i, h, z)
        return ops.concatenate(mus, -1), ops.concatenate(sigmas, -1)

    def posterior_pass(self, feats, eps, training=False):
        """Sampled posterior pass for one image batch's features [B, ...] (top group's first,
        :attr:`HierarchicalVAE.bottom_up`) and noise ε [N, D], N = S·B: S samples per image,
        sample-major (row s·B + b is image b's sample s).

        Returns:
            ([per group: {"kl", "log_p", "log_q"} float32 [N]], the state after the last
            group): KL(q(z_l|x, z_<l) ‖ p(z_l|z_<l)) in nats, analytic for a Gaussian group
            (summed over a map's positions and channels) and the one-sample estimate
            log q − log p for a group with posterior flows; log p(z_l|z_<l) and
            log q(z_l|x, z_<l) at the sample.
        """
        n, b = tf.shape(eps)[0], tf.shape(feats[0])[0]
        samples = n // b
        h = self.h0(eps)
        terms = []
        for i, shape in enumerate(self.shapes):
            h = self.enter(i, h)
            loc, scale = self.prior_params(i, h)
            d_mu, d_sigma = self.posterior_params_given(i, h, self.posterior_context(i, feats[i]), samples)
            if i == 0:
                loc, scale = tf.zeros_like(d_mu), tf.ones_like(d_sigma)
            p = tfd.Independent(tfd.Normal(loc, scale), len(shape))
            q = tfd.Independent(tfd.Normal(loc + d_mu, scale * d_sigma), len(shape))
            z = loc + d_mu + scale * d_sigma * self.noise(i, eps)
            log_q = q.log_prob(z)
            if self.flows[i]:  # the flow's context needs the features once per sample
                a = tf.reshape(tf.broadcast_to(feats[i], tf.concat([[samples], tf.shape(feats[i])], 0)),
                               tf.concat([[n], tf.shape(feats[i])[1:]], 0))
                z, log_det = self.flow(i, z, h, a)
            else:
                log_det = 0.0
            log_p = p.log_prob(z)
            if self.flows[i]:
                log_q = log_q - log_det  # Kingma et al. 2016, eq. 10
                kl = log_q - log_p
            else:
                kl = tfd.kl_divergence(q, p)
            terms.append({"kl": kl, "log_p": log_p, "log_q": log_q})
            h = self.advance(i, h, z)
        return terms, h

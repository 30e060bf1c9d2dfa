"""The likelihoods p(x|z): one object each, owning everything that depends on it.

Each :class:`Likelihood` owns its decoder head (the output layers on the decoder's last
feature map), its ``tfd`` distribution, its mean image, its bits/dim conversion and its
binarization default (vdvae's ``DmolNet`` is the pattern):

* ``bernoulli``: Bernoulli(logits) per pixel of a binarized image (Kingma & Welling 2013,
  appendix C.1); default binarization ``dynamic``.
* ``gaussian``: Normal(loc, σ) of grey levels in [0, 1] (appendix C.2), σ fixed
  (``--sigma 0.1``: σ² balances reconstruction against KL) or learned per pixel
  (``--sigma learned``); default binarization ``none``.
* ``logistic``: the discretized logistic of 8-bit pixels (Salimans et al. 2017, eq. 2),
  a probability of each of the 256 levels; default binarization ``none``.

:func:`for_config` picks the object of a ModelConfig. Importing this module imports no
TensorFlow (``tfvae.config`` reads :data:`NAMES` and the binarization defaults); the
methods that build tensors import it.
"""

from __future__ import annotations

import math

NAMES = ("bernoulli", "gaussian", "logistic")


class Likelihood:
    """Base of the likelihood objects.

    Attributes:
        name: the ``--likelihood`` value.
        default_binarization: the ``--binarization`` used when none is given.
        outputs: the decoder's output names, each float32 [B, H, W, C].
    """

    name = ""
    default_binarization = "none"
    outputs: tuple = ()

    def head(self, raw, cfg, z) -> dict:
        """The decoder's outputs from ``raw(name)``, a function that builds one
        [B, H, W, C] float32 output layer named ``name`` on the decoder's last features.

        Args:
            raw: ``name -> tensor`` (the architecture's output layer, e.g. a transposed
                convolution to C channels).
            cfg: the ModelConfig (``scale_floor``, ``image_shape``).
            z: the decoder's latent input [B, D] (a per-pixel learned σ broadcasts over it).

        Returns:
            Dict keyed by :attr:`outputs`.
        """
        raise NotImplementedError

    def distribution(self, params: dict):
        """p(x|z) from the decoder's outputs (each float32 [..., H, W, C]): a ``tfd``
        distribution with event shape [H, W, C]; ``log_prob(x)`` is in nats per image."""
        raise NotImplementedError

    def mean(self, params: dict):
        """E[x|z] in [0, 1], float32 [..., H, W, C]."""
        return params["loc"]

    def bits_per_dim(self, nats, image_shape, binarization: str):
        """Nats per image -> (bits per dimension, the conversion used, a string).

        D = H·W·C. A probability of a discrete image (binarized, or 8-bit levels) gives
        bits/dim = nats / (D ln 2)."""
        d = int(math.prod(image_shape))
        what = f"{binarization}-binarized images" if binarization != "none" else "8-bit images"
        return nats / (d * math.log(2)), f"nats / (D ln 2), D = H*W*C: probability of the {what}"


class Bernoulli(Likelihood):
    """Bernoulli(logits) per pixel (Kingma & Welling 2013, appendix C.1); outputs ``logits``."""

    name = "bernoulli"
    default_binarization = "dynamic"
    outputs = ("logits",)

    def head(self, raw, cfg, z):
        return {"logits": raw("logits")}

    def distribution(self, params):
        import tensorflow as tf
        import tensorflow_probability as tfp

        tfd = tfp.distributions
        return tfd.Independent(tfd.Bernoulli(logits=params["logits"], dtype=tf.float32), reinterpreted_batch_ndims=3)

    def mean(self, params):
        import tensorflow as tf

        return tf.sigmoid(params["logits"])


class Gaussian(Likelihood):
    """Normal(loc, σ) per pixel with a fixed σ (Kingma & Welling 2013, appendix C.2);
    outputs ``loc`` (a sigmoid, in [0, 1]).

    Args:
        sigma: the standard deviation σ > 0.
    """

    name = "gaussian"
    outputs = ("loc",)

    def __init__(self, sigma: float = 0.1):
        self.sigma = float(sigma)

    def head(self, raw, cfg, z):
        from keras import layers

        return {"loc": layers.Activation("sigmoid", name="loc", dtype="float32")(raw("loc_raw"))}

    def _scale(self, params):
        import tensorflow as tf

        return tf.cast(self.sigma, params["loc"].dtype)

    def distribution(self, params):
        import tensorflow_probability as tfp

        tfd = tfp.distributions
        return tfd.Independent(tfd.Normal(loc=params["loc"], scale=self._scale(params)), reinterpreted_batch_ndims=3)

    def bits_per_dim(self, nats, image_shape, binarization):
        """As :meth:`Likelihood.bits_per_dim`, except for grey levels (``binarization``
        ``none``): the Gaussian of x = k/255 is a density on [0, 1]^D, and as the field does
        for continuous models of 8-bit data (e.g. Theis et al. 2016, sec. 3.1), the
        log-volume of the level cells is added: levels k/255 lie 1/255 apart, so each cell
        is 1/255 wide and the probability of the level is ≈ density × 255^−D, giving
        (nats + D ln 255) / (D ln 2). (Data scaled as k/256, or dequantized to
        (k + u)/256, would use ln 256.) The density is evaluated at the levels without
        uniform dequantization noise, so the figure is comparable in form but is not a
        proven bound."""
        if binarization != "none":
            return super().bits_per_dim(nats, image_shape, binarization)
        d = int(math.prod(image_shape))
        return (nats + d * math.log(255)) / (d * math.log(2)), \
            "(nats + D ln 255) / (D ln 2), D = H*W*C: density of x = k/255 (level width 1/255), no dequantization noise"


class LearnedGaussian(Gaussian):
    """Normal(loc, σ) with one learned σ per pixel (the same for every z); outputs ``loc``
    and ``scale`` (:class:`tfvae.networks.PixelScale`)."""

    outputs = ("loc", "scale")

    def __init__(self):
        super().__init__(sigma=float("nan"))

    def head(self, raw, cfg, z):
        from .networks import PixelScale

        return {**super().head(raw, cfg, z),
                "scale": PixelScale(tuple(cfg.image_shape), name="scale", dtype="float32")(z)}

    def _scale(self, params):
        return params["scale"]


class DiscretizedLogisticLikelihood(Likelihood):
    """The discretized logistic of 8-bit pixels (Salimans et al. 2017, eq. 2), one logistic
    per sub-pixel; outputs ``loc`` (sigmoid) and ``scale`` (softplus + floor), both on the
    [0, 1] pixel scale (see :func:`tfvae.distributions.discretized_logistic`)."""

    name = "logistic"
    outputs = ("loc", "scale")

    def head(self, raw, cfg, z):
        from keras import layers

        from .networks import PositiveScale

        return {"loc": layers.Activation("sigmoid", name="loc", dtype="float32")(raw("loc_raw")),
                "scale": PositiveScale(cfg.scale_floor, name="scale", dtype="float32")(raw("scale_raw"))}

    def distribution(self, params):
        from .distributions import DiscretizedLogistic

        return DiscretizedLogistic(params["loc"], params["scale"])

    def bits_per_dim(self, nats, image_shape, binarization):
        d = int(math.prod(image_shape))
        return nats / (d * math.log(2)), \
            "nats / (D ln 2), D = H*W*C: probability of the 8-bit images (discretized logistic)"


def for_config(cfg) -> Likelihood:
    """The likelihood object of a ModelConfig (``likelihood``, ``sigma``).

    Raises:
        ValueError: unknown likelihood name.
    """
    if cfg.likelihood == "bernoulli":
        return Bernoulli()
    if cfg.likelihood == "gaussian":
        return LearnedGaussian() if cfg.sigma == "learned" else Gaussian(cfg.sigma)
    if cfg.likelihood == "logistic":
        return DiscretizedLogisticLikelihood()
    raise ValueError(f"unknown likelihood {cfg.likelihood!r}; expected one of {', '.join(NAMES)}")


def default_binarization(name: str) -> str:
    """The ``--binarization`` a likelihood implies when none is given."""
    return "dynamic" if name == Bernoulli.name else "none"

"""The registry of model families: one record per family, its capabilities as data.

Commands never compare a model's name: they look its record up (:func:`family`) and ask a
capability (``variational``, ``conditional``, ``latent_groups`` ...). A new family is one
module under ``tfvae/models/`` and one :func:`register` call; the CLI's ``--model`` choices
and every refusal ("export needs a family with an exportable decoder; this run is …")
follow from the record.

This module imports no TensorFlow (``cli.py --help`` and ``tfvae.config`` read it); a
family's class is imported when a model is built (:func:`build_model`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional, Union

from ..errors import TfvaeError

LIKELIHOOD_NAMES = ("bernoulli", "gaussian", "logistic")
PRIOR_NAMES = ("standard", "mog", "vamp")
OBJECTIVE_NAMES = ("elbo", "iwae")
ARCHITECTURE_NAMES = ("mlp", "conv", "kerasio", "resnet")
DEFAULT_FAMILY = "hvae"  # the --model a run gets when none is given (issue 28: the VAE before)


@dataclass(frozen=True)
class Family:
    """One model family and what it can do.

    Attributes:
        name: the ``--model`` value, recorded as ``model.model`` in ``config.json``.
        summary: one phrase for ``train --help``.
        model_class: the Keras model class, or ``"module:Class"`` (imported on first use),
            built as ``cls(config, **options)`` (see :func:`build_model`); None for a family
            fitted in closed form (``fit``/``load``).
        fit, load: a closed-form family's ``fit(cfg, data, run_dir) -> summary`` and
            ``load(run_dir) -> model`` (``"module:function"``); None for Keras families.
        variational: a posterior q(z|x) with a scale, a prior p(z) and an ELBO; ``evaluate``
            reports the importance-weighted NLL, and ``compare`` a β, prior and objective.
        conditional: encoder and decoder also take the one-hot label (needs labelled data).
        latent_groups: the latent is a hierarchy of groups (``--group-dims``; the traversal
            sweeps the top group; evaluate reports KL and active units per group).
        discrete_codes: the latent is a grid of codebook indices.
        posterior_scale: the encoder's posterior has a scale (training draws noise ε);
            False: z is the encoder's mean.
        encoder: a trained encoder whose codes ``interpolate``, ``latent``, ``classify``,
            ``inpaint`` and ``traverse`` use.
        exportable_decoder: ``export`` writes its decoder (SavedModel, TFLite, ONNX).
        fitted_codes: after training a Gaussian is fitted to the training codes
            (``sample --source fitted``).
        priors, objectives, likelihoods, architectures: the ``--prior``, ``--objective``,
            ``--likelihood`` and ``--arch`` values it accepts.
        kl_schedule: ``--free-bits`` and ``--kl-warmup-epochs`` apply (the ELBO's KL term is
            in its loss, as is).
        evaluation: what ``evaluate`` reports: ``iw_nll`` (importance-weighted NLL, −ELBO,
            KL, active units), ``closed_form`` (exact log-density), or None (refused).
        objective_label: the objective's name in ``compare`` when not variational.
        recipe: the family's training recipe, ``(TrainConfig field, value)`` pairs that
            ``train`` uses where neither the command line nor ``--preset`` sets the option
            (:func:`recipe_for`); the other options keep :class:`tfvae.config.TrainConfig`'s
            defaults.
    """

    name: str
    summary: str
    model_class: Union[str, type, None] = None
    fit: Union[str, Callable, None] = None
    load: Union[str, Callable, None] = None
    variational: bool = True
    conditional: bool = False
    latent_groups: bool = False
    discrete_codes: bool = False
    posterior_scale: bool = True
    encoder: bool = True
    exportable_decoder: bool = True
    fitted_codes: bool = False
    priors: tuple = ("standard",)
    objectives: tuple = ("elbo",)
    likelihoods: tuple = LIKELIHOOD_NAMES
    architectures: tuple = ARCHITECTURE_NAMES
    kl_schedule: bool = True
    evaluation: Optional[str] = "iw_nll"
    objective_label: str = ""
    recipe: tuple = ()

    @property
    def keras(self) -> bool:
        """Trained by gradient steps (``fit`` or the multi-worker loop), not in closed form."""
        return self.model_class is not None

    @property
    def kl_per_dimension(self) -> bool:
        """A one-layer diagonal posterior whose per-dimension KL to N(0, I) is analytic
        (TensorBoard's KL histogram, the traversal's ranking) given the image alone."""
        return self.variational and not self.conditional and not self.latent_groups

    def resolve(self, attribute: str):
        """The class or function named by ``attribute`` (imported on first use)."""
        value = getattr(self, attribute)
        if isinstance(value, str):
            module, name = value.split(":")
            value = getattr(importlib.import_module(module), name)
        return value


_FAMILIES: dict = {}


def register(record: Family, replace: bool = False) -> Family:
    """Add a family to the registry (``replace``: overwrite a record of the same name).

    Raises:
        ValueError: the name is taken (and ``replace`` is False) or not a plain word.
    """
    if not record.name.replace("_", "").isalnum():
        raise ValueError(f"a family's name is a plain word, got {record.name!r}")
    if record.name in _FAMILIES and not replace:
        raise ValueError(f"model family {record.name!r} is already registered")
    _FAMILIES[record.name] = record
    return record


def unregister(name: str) -> None:
    """Remove a family (tests that register a toy family remove it again)."""
    _FAMILIES.pop(name, None)


def names() -> tuple:
    """The registered families' names, in registration order (the ``--model`` choices)."""
    return tuple(_FAMILIES)


def families() -> tuple:
    """Every registered :class:`Family`."""
    return tuple(_FAMILIES.values())


def family(name: str) -> Family:
    """The record of ``name``.

    Raises:
        TfvaeError: no family of that name (lists the registered ones).
    """
    try:
        return _FAMILIES[name]
    except KeyError:
        raise TfvaeError(f"--model must be one of {', '.join(_FAMILIES)}, got {name!r}") from None


def of(cfg) -> Family:
    """The family of a ModelConfig or RunConfig."""
    model_cfg = getattr(cfg, "model", cfg)
    return family(model_cfg if isinstance(model_cfg, str) else model_cfg.model)


def recipe_for(name: str) -> dict:
    """The training settings family ``name`` defaults to (its :attr:`Family.recipe`), as
    ``{TrainConfig field: value}``; empty for a family that keeps TrainConfig's defaults.

    Raises:
        TfvaeError: unknown family.
    """
    return dict(family(name).recipe)


def with_capability(**wanted) -> tuple:
    """Names of the families whose capabilities equal ``wanted`` (e.g. ``encoder=True``)."""
    return tuple(f.name for f in _FAMILIES.values() if all(getattr(f, k) == v for k, v in wanted.items()))


def require(cfg, capability: str, command: str, why: str = "") -> Family:
    """The run's family, when it has ``capability``.

    Raises:
        TfvaeError: one line naming the command, the capability, the families that have it
            and the run's family.
    """
    record = of(cfg)
    if not getattr(record, capability):
        able = with_capability(**{capability: True})
        what = why or capability.replace("_", " ")
        raise TfvaeError(f"{command} needs a model with {what} (--model {' or '.join(able) or 'none'}); "
                         f"this run is --model {record.name}")
    return record


def build_model(config, beta=1.0, kl_warmup_steps=0, mc_samples=1, seed=None, objective="elbo", iw_samples=1,
                free_bits=0.0, precision: str = "float32", dataset_size: int = 1):
    """Construct the Keras model of ``config.model``'s family and build its weights (one call
    on zero inputs).

    Every family's class takes ``(config, beta=, kl_warmup_steps=, mc_samples=, objective=,
    iw_samples=, free_bits=, seed=, dataset_size=)`` and uses what applies to it
    (``dataset_size``: the training split's size N, for β-TCVAE's minibatch-weighted sampling).

    ``precision``: Keras dtype policy of the hidden layers while the networks are built
    (``float32``, ``mixed_bfloat16``, ``mixed_float16``). Variables are float32 in every
    case, so weights trained in mixed precision load into a float32 model (evaluation and
    export use float32); network outputs and every log-probability stay float32.

    Raises:
        ValueError: the family is fitted in closed form (not a Keras model).
        TfvaeError: unknown family.
    """
    import keras
    import tensorflow as tf

    record = of(config)
    if not record.keras:
        raise ValueError(f"build_model: {config.model!r} is fitted in closed form, not a Keras model family")
    cls = record.resolve("model_class")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        model = cls(config, beta=beta, kl_warmup_steps=kl_warmup_steps, mc_samples=mc_samples, objective=objective,
                    iw_samples=iw_samples, free_bits=free_bits, seed=seed, dataset_size=dataset_size)
    finally:
        keras.config.set_dtype_policy(previous)
    x = tf.zeros([1] + list(config.image_shape))
    model([x, tf.zeros([1, config.num_classes])] if record.conditional else x)
    return model


# ---- the families ---------------------------------------------------------------------
register(Family(
    "vae", "a VAE (Kingma & Welling 2013) with a diagonal-Gaussian posterior",
    model_class="tfvae.models.vae:VAE", priors=PRIOR_NAMES, objectives=OBJECTIVE_NAMES))
register(Family(
    "ae", "deterministic autoencoder (z = encoder mean, reconstruction loss only)",
    model_class="tfvae.models.ae:Autoencoder", variational=False, posterior_scale=False, fitted_codes=True,
    kl_schedule=False, evaluation=None, objective_label="reconstruction"))
register(Family(
    "cvae", "conditional VAE on the one-hot label (Sohn et al. 2015)",
    model_class="tfvae.models.vae:VAE", conditional=True, exportable_decoder=False, priors=("standard", "mog"),
    objectives=OBJECTIVE_NAMES))
register(Family(
    "pca", "probabilistic PCA in closed form (Tipping & Bishop 1999) with --latent-dim components",
    fit="tfvae.models.pca:fit_run", load="tfvae.models.pca:load_pca", variational=False, encoder=False,
    exportable_decoder=False, kl_schedule=False, evaluation="closed_form", objective_label="closed form"))
register(Family(
    "hvae", "a top-down hierarchical VAE with --group-dims latent groups (Sønderby et al. 2016; Vahdat & Kautz 2020)",
    model_class="tfvae.models.hvae:HierarchicalVAE", latent_groups=True, objectives=OBJECTIVE_NAMES,
    # The default model's recipe (issue 28; README "Default model and results"): free bits keep every group in
    # use; cosine decay over the 100 epochs (a 25- or 50-epoch schedule trailed it at equal epochs:
    # bench/results/probes/) and an EMA of the weights.
    recipe=(("lr_schedule", "cosine"), ("ema_decay", 0.999), ("free_bits", 0.1))))
register(Family(
    "vqvae", "VQ-VAE: a grid of discrete codes, the codebook updated by moving averages, and a learned "
             "autoregressive prior over the grid (van den Oord et al. 2017; Razavi et al. 2019)",
    model_class="tfvae.models.vqvae:VQVAE", variational=False, discrete_codes=True, posterior_scale=False,
    architectures=("conv", "resnet"), kl_schedule=False,
    objective_label="reconstruction + commitment, then the prior"))
register(Family(
    "btcvae", "β-TCVAE, --beta weights the total correlation (Chen et al. 2018)",
    model_class="tfvae.models.btcvae:BetaTCVAE", kl_schedule=False))

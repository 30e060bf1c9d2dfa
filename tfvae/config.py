"""Typed run configuration: one dataclass per concern, JSON round-trip, validation.

Every CLI option of ``train`` maps to exactly one field here (the option is the field
name with ``-`` for ``_``), so validation errors name the option the user typed.
``config.json`` in a run directory holds a :class:`RunConfig`; it is all that is
needed to rebuild the model and its data pipeline.

The model families and what each accepts live in :mod:`tfvae.models.registry`; validation
asks it. This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .errors import TfvaeError
from .likelihoods import NAMES as LIKELIHOODS
from .likelihoods import default_binarization
from .models import registry
from .models.registry import OBJECTIVE_NAMES as OBJECTIVES
from .models.registry import PRIOR_NAMES as PRIORS

from .models.registry import ARCHITECTURE_NAMES as ARCHITECTURES
BINARIZATIONS = ("dynamic", "static", "none")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# Optimizer steps per tf.function call when --steps-per-execution is not given. 50 steps
# per call ran faster in train_bench's 60-step windows (bench/results/train_bench.json)
# but slower in full `cli.py train` runs (bench/results/time_to_quality.json: seconds per
# epoch of the two recipes), so the default is one step per call until that is understood.
AUTO_STEPS_PER_EXECUTION = 1

# Layer widths used when the user does not give them (see networks.py).
DEFAULT_HIDDEN_UNITS = {"mlp": [512, 256], "conv": [512], "kerasio": [16], "resnet": [512]}
DEFAULT_CONV_FILTERS = [32, 64]
DEFAULT_PRIOR_COMPONENTS = {"mog": 10, "vamp": 100}
# The hierarchical VAE's groups when --group-dims is not given, top group first: LVAE's
# MNIST model (Sønderby et al. 2016, section 3: 64-32-16-8-4 from the bottom).
DEFAULT_GROUP_DIMS = [4, 8, 16, 32, 64]


def group_map_shapes(m: "ModelConfig") -> list:
    """The spatial latent groups of a hierarchical VAE (``m.group_maps``), coarsest first:
    [(h, w, c, f)], a map of h × w positions and c channels at the decoder's resolution
    H/2^k × W/2^k (k = len(conv_filters), …, rounded up as the stride-2 convolutions do),
    where the convolutional networks have f = conv_filters[k − 1] channels. Empty without
    ``group_maps`` or before ``image_shape`` is known."""
    if not m.group_maps or m.image_shape is None:
        return []
    filters = list(m.conv_filters or DEFAULT_CONV_FILTERS)
    height, width = int(m.image_shape[0]), int(m.image_shape[1])
    shapes = []
    for j, c in enumerate(m.group_maps):
        k = len(filters) - j
        shapes.append((math.ceil(height / 2**k), math.ceil(width / 2**k), int(c), int(filters[k - 1])))
    return shapes


def latent_group_sizes(m: "ModelConfig") -> list:
    """Dimensions of every latent group of a hierarchical VAE, top group first: the vector
    groups (``group_dims``), then each latent map's h·w·c (:func:`group_map_shapes`). The
    latent size D (``latent_dim``, the decoder's noise input [B, D]) is their sum."""
    return [int(d) for d in (m.group_dims or [])] + [h * w * c for h, w, c, _ in group_map_shapes(m)]


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


@dataclass
class DataConfig:
    """Where the images come from and how they are prepared.

    Attributes:
        dataset: TFDS name (``mnist``, ``fashion_mnist``, ``cifar10`` ...), or a label
            for the IDX folder when ``idx_dir`` is set.
        data_dir: TFDS data directory; ``None`` means TFDS's default, which honours
            the ``TFDS_DATA_DIR`` environment variable.
        idx_dir: folder of MNIST-format IDX files (gzipped or raw); overrides TFDS.
        binarization: ``dynamic`` (fresh Bernoulli draw each time a training image is
            seen), ``static`` (threshold 0.5) or ``none`` (grey levels in [0, 1]).
            ``None`` resolves to ``dynamic`` for the Bernoulli likelihood and ``none``
            for the Gaussian one.
        validation_size: images carved from the training split for validation; None: the
            smaller of 5,000 and a tenth of the training split (at least 1), so a folder of
            a few hundred images trains with the default; a run's ``config.json`` records
            the number used.
        split_seed: seed of the permutation that carves the validation split.
        binarization_seed: seed of the single Bernoulli draw that binarizes the
            validation and test images under ``dynamic`` binarization (held-out data
            is binarized once, so every evaluation sees the same images).
        max_train_examples: use only the first N training images (quick runs, tests).
        image_dir: a folder of image files (see ``tfvae/folder.py``); overrides TFDS.
        image_size: [H, W] the folder's images are brought to (None: their most common
            size, filled in when training starts).
        channels: 1 or 3 (None: the files' own, filled in when training starts).
        test_fraction: share of each class of an image folder held out for testing
            (seeded by ``split_seed``) when it has no ``train/`` and ``test/`` folders.
        max_image_pixels: an image folder's files declaring more pixels (H·W, read from the
            file's header before any decoding) are skipped and counted, so a decompression
            bomb (a small PNG declaring 20,000×20,000 pixels) never reaches the decoder.
    """

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    idx_dir: Optional[str] = None
    binarization: Optional[str] = None
    validation_size: Optional[int] = None
    split_seed: int = 0
    binarization_seed: int = 0
    max_train_examples: Optional[int] = None
    image_dir: Optional[str] = None
    image_size: Optional[list] = None
    channels: Optional[int] = None
    test_fraction: float = 0.1
    max_image_pixels: int = 50_000_000


@dataclass
class ModelConfig:
    """The VAE's networks and distributions.

    Attributes:
        model: the model family (``--model``), a name in :mod:`tfvae.models.registry`
            (its record says what the family is and accepts).
        arch: ``conv`` or ``mlp``, both sized from ``image_shape``; or ``kerasio``, the
            keras-io "Variational AutoEncoder" example's networks (conv 32-64 stride 2,
            dense 16; dense to H/4×W/4×64, transposed convs 64 and 32 stride 2, and a
            stride-1 transposed conv to the channels), for like-for-like comparisons.
        latent_dim: dimension D of z.
        likelihood: ``bernoulli`` (decoder gives logits), ``gaussian``, or ``logistic``:
            the discretized logistic of 8-bit pixels (Salimans et al. 2017, eq. 2), a
            probability of each of the 256 levels, with a location and scale per
            sub-pixel from the decoder.
        sigma: Gaussian likelihood's standard deviation: a positive float (fixed;
            σ² is the constant that balances reconstruction against KL) or the
            string ``"learned"`` (one learned σ per pixel).
        hidden_units: dense layer widths (MLP layers; for ``conv``, the dense layers
            between the convolutions and the latent code).
        conv_filters: filters of the stride-2 convolutions (``conv`` only).
        scale_floor: added to softplus(·) so the posterior (and learned likelihood)
            scale never reaches 0.
        prior: p(z): ``standard`` N(0, I); ``mog``, a learned mixture of
            ``prior_components`` diagonal Gaussians; ``vamp``, the VampPrior
            p(z) = (1/M) Σ_m q(z|u_m) with M = ``prior_components`` learned pseudo-inputs
            u_m (Tomczak & Welling 2018, eq. 9).
        prior_components: M for ``mog`` / ``vamp`` (0 resolves to 10 for ``mog``, 100
            for ``vamp``).
        num_classes: number of classes of the labels a ``cvae`` is conditioned on
            (filled in from the data).
        image_shape: (H, W, C), filled in from the data when training starts.
        res_blocks: residual blocks after each stride-2 convolution (``resnet`` only;
            each block is two 3×3 convolutions, He et al. 2016).
        group_dims: families with latent groups (``hvae``) only: dimensions of each latent
            group, top group first (None resolves to :data:`DEFAULT_GROUP_DIMS`);
            ``latent_dim`` is set to their sum.
        hvae_width: ``hvae`` only: width of the top-down state and bottom-up features.
        group_maps: ``hvae`` only: channels of the spatial latent groups below the vector
            groups, coarsest first, one per decoder resolution H/2^k × W/2^k for
            k = len(conv_filters), …, 1 (MNIST with the default filters: 7×7, then 14×14;
            NVAE, Vahdat & Kautz 2020, section 3.1). None: vector groups only. Each map
            group's size h·w·c is added to ``latent_dim`` once ``image_shape`` is known
            (:func:`latent_group_sizes`).
        posterior_flows: ``hvae`` only: inverse autoregressive flow steps on each vector
            group's posterior (Kingma et al. 2016; :mod:`tfvae.flows`); 0: Gaussian
            posteriors. Their KL is then the one-sample estimate log q − log p.
        codebook_size: families with discrete codes (``vqvae``): K, the codebook's vectors.
        commitment: ``vqvae``: β_c, the weight of ‖z_e − sg(z_q)‖² in the loss.
        codebook_decay: ``vqvae``: γ of the codebook's exponential moving averages.
        prior_width, prior_layers: ``vqvae``: width and depth of the autoregressive prior
            over the code grid (a causal transformer). The defaults are sized for a CPU: a
            prior epoch of width 64 costs about a quarter of width 128's (the VQ-VAE section
            of the README has the measured times, ``prior_metrics.csv`` each run's).
    """

    model: str = registry.DEFAULT_FAMILY
    arch: str = "conv"
    latent_dim: int = 32
    likelihood: str = "bernoulli"
    sigma: Union[float, str] = 0.1
    hidden_units: Optional[list] = None
    conv_filters: Optional[list] = None
    scale_floor: float = 1e-4
    prior: str = "standard"
    prior_components: int = 0
    num_classes: int = 0
    image_shape: Optional[list] = None
    res_blocks: int = 2
    group_dims: Optional[list] = None
    hvae_width: int = 256
    group_maps: Optional[list] = None
    posterior_flows: int = 0
    codebook_size: int = 512
    commitment: float = 0.25
    codebook_decay: float = 0.99
    prior_width: int = 64
    prior_layers: int = 2


@dataclass
class TrainConfig:
    """Optimisation settings.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per gradient step.
        learning_rate: Adam's step size.
        beta: weight of KL(q‖p) in the loss (β-VAE, Higgins et al. 2017); 1 gives the ELBO.
        kl_warmup_epochs: the KL weight rises linearly from 0 to β over this many epochs.
        mc_samples: reparameterized samples of z per image for the reconstruction term.
        objective: ``elbo``, or ``iwae``: the importance-weighted bound
            log (1/K) Σ_k p(x, z_k)/q(z_k|x) with K = ``train_iw_samples`` (Burda et al.
            2015, eq. 8), which equals the ELBO at K = 1 and tightens as K grows.
        train_iw_samples: K of the ``iwae`` objective.
        free_bits: λ ≥ 0, nats per latent dimension: the loss uses Σ_d max(λ, KL_d), KL_d
            averaged over the batch (Kingma et al. 2016, eq. 15); 0 turns it off.
        ema_decay: exponential moving average of the weights (Keras's optimizer EMA);
            validation, checkpoints, evaluation and export use the averaged weights.
            0 turns it off; typical 0.999.
        weight_decay: decoupled weight decay of the kernels (AdamW, Loshchilov & Hutter 2019,
            algorithm 2: each step multiplies a kernel by 1 − learning rate × weight_decay;
            biases are not decayed); 0 turns it off (Adam).
        lr_schedule: ``constant`` or ``cosine`` (decay from ``learning_rate`` to 1% of it
            over all epochs; Loshchilov & Hutter 2017 without restarts).
        steps_per_execution: optimizer steps per ``tf.function`` call (Keras
            ``steps_per_execution``): fewer Python round trips per epoch. None (auto):
            :data:`AUTO_STEPS_PER_EXECUTION`, and 1 under ``--strategy multiworker`` (whose
            loop runs one step per call); lowered to the largest divisor of one epoch's
            steps not above it (an epoch is the same updates for every value); train writes
            the value it used to ``config.json``.
        precision: ``float32``, or mixed precision for the hidden layers while training:
            ``mixed_bfloat16`` (CPUs with AVX512-BF16/AMX, TPUs, recent GPUs) or
            ``mixed_float16`` (GPUs). Variables, outputs and log-probabilities stay float32;
            evaluation and export always run in float32. ``train`` refuses a precision
            the machine would only emulate (:func:`tfvae.hardware.check_precision`).
        jit: compile the train/test steps with XLA.
        prior_epochs: families with a learned prior over discrete codes (``vqvae``): epochs
            of the prior's training on the training split's codes, after the autoencoder's.
        prior_learning_rate: its Adam step size (cosine-decayed to 1% over those epochs).
        seed: seed of weights initialisation, shuffling, dynamic binarization and z samples.
    """

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    mc_samples: int = 1
    objective: str = "elbo"
    train_iw_samples: int = 1
    free_bits: float = 0.0
    ema_decay: float = 0.0
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    steps_per_execution: Optional[int] = None
    precision: str = "float32"
    jit: bool = False
    prior_epochs: int = 6
    prior_learning_rate: float = 1e-3
    seed: int = 0


@dataclass
class RunConfig:
    """Everything a run directory's ``config.json`` records.

    ``meta`` holds facts about the run that do not change the model (class names,
    split sizes, versions, the command line).
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    meta: dict = field(default_factory=dict)

    # ---- resolution and validation -------------------------------------------------
    def resolved(self) -> "RunConfig":
        """Return a copy with defaults that depend on other fields filled in."""
        cfg = RunConfig.from_dict(self.to_dict())
        if cfg.data.binarization is None:
            cfg.data.binarization = default_binarization(cfg.model.likelihood)
        if cfg.model.hidden_units is None:
            cfg.model.hidden_units = list(DEFAULT_HIDDEN_UNITS.get(cfg.model.arch, [256]))
        if cfg.model.conv_filters is None:
            cfg.model.conv_filters = list(DEFAULT_CONV_FILTERS)
        if cfg.model.model in registry.names() and registry.of(cfg).latent_groups:
            if cfg.model.group_dims is None:
                cfg.model.group_dims = list(DEFAULT_GROUP_DIMS)
            if cfg.model.group_dims and all(isinstance(v, int) for v in cfg.model.group_dims):
                cfg.model.latent_dim = sum(latent_group_sizes(cfg.model))
        if cfg.model.prior_components == 0 and cfg.model.prior != "standard":
            cfg.model.prior_components = DEFAULT_PRIOR_COMPONENTS[cfg.model.prior]
        return cfg

    def validate(self) -> None:
        """Check every field's range.

        Raises:
            TfvaeError: naming the option and what was expected, for the first bad field.
        """
        d, m, t = self.data, self.model, self.train
        self._check_types()

        def positive_int(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise TfvaeError(f"{_option(name)} must be a positive integer, got {value!r}")

        def choice(name, value, choices):
            if value not in choices:
                raise TfvaeError(f"{_option(name)} must be one of {', '.join(choices)}, got {value!r}")

        positive_int("latent_dim", m.latent_dim)
        family = registry.family(m.model)  # an unknown --model fails here, naming the families
        choice("arch", m.arch, ARCHITECTURES)
        choice("prior", m.prior, PRIORS)
        if isinstance(m.prior_components, bool) or not isinstance(m.prior_components, int) or m.prior_components < 0:
            raise TfvaeError(f"--prior-components must be a non-negative integer, got {m.prior_components!r}")
        choice("likelihood", m.likelihood, LIKELIHOODS)
        choice("objective", t.objective, OBJECTIVES)
        for option, value, accepted in (("prior", m.prior, "priors"), ("objective", t.objective, "objectives"),
                                        ("likelihood", m.likelihood, "likelihoods")):
            if value not in getattr(family, accepted):
                able = [f.name for f in registry.families() if value in getattr(f, accepted)]
                raise TfvaeError(f"{_option(option)} {value} needs --model {' or '.join(able)}, not {m.model}")
        if m.arch not in family.architectures:
            raise TfvaeError(f"--arch {m.arch}: --model {m.model} takes --arch {' or '.join(family.architectures)}")
        if family.discrete_codes:
            self._check_codebook()
        if not family.kl_schedule and (t.free_bits or t.kl_warmup_epochs):
            raise TfvaeError(f"--model {m.model} trains its own objective: --free-bits and --kl-warmup-epochs do not "
                             f"apply; leave them at 0")
        if isinstance(m.sigma, str):
            if m.sigma != "learned":
                raise TfvaeError(f"--sigma must be a positive number or 'learned', got {m.sigma!r}")
        elif not (isinstance(m.sigma, (int, float)) and m.sigma > 0):
            raise TfvaeError(f"--sigma must be a positive number or 'learned', got {m.sigma!r}")
        for name in ("hidden_units", "conv_filters"):
            value = getattr(m, name)
            if value is not None and (not value or any(not isinstance(v, int) or v <= 0 for v in value)):
                raise TfvaeError(f"{_option(name)} must be a list of positive integers, got {value!r}")
        if m.arch == "resnet":
            positive_int("res_blocks", m.res_blocks)
        positive_int("hvae_width", m.hvae_width)
        if m.group_dims is not None and (not m.group_dims or any(
                isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in m.group_dims)):
            raise TfvaeError(f"--group-dims must be a list of positive integers, got {m.group_dims!r}")
        if family.latent_groups:
            if m.group_dims is not None and len(m.group_dims) < 2:
                raise TfvaeError(f"--group-dims: a hierarchical VAE needs at least 2 latent groups, got {m.group_dims!r}")
            if m.group_maps is not None:
                if not m.group_maps or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0
                                           for v in m.group_maps):
                    raise TfvaeError(f"--group-maps must be a list of positive integers, got {m.group_maps!r}")
                if m.arch not in ("conv", "resnet"):
                    raise TfvaeError(f"--group-maps needs --arch conv or resnet (latent maps at the convolutional "
                                     f"decoder's resolutions), not {m.arch}")
                levels = len(m.conv_filters or DEFAULT_CONV_FILTERS)
                if len(m.group_maps) > levels:
                    raise TfvaeError(f"--group-maps has {len(m.group_maps)} entries, but the decoder has {levels} "
                                     f"resolutions below the image's (one per --conv-filters entry)")
            if m.group_dims is not None and sum(latent_group_sizes(m)) != m.latent_dim:
                raise TfvaeError(f"--group-dims {','.join(map(str, m.group_dims))} sums to {sum(m.group_dims)}, but the "
                                 f"latent size is {m.latent_dim}: an hvae's latent size is the sum of --group-dims "
                                 f"(and of the --group-maps' sizes); leave --latent-dim out")
            if m.posterior_flows < 0:
                raise TfvaeError(f"--posterior-flows must be a non-negative integer, got {m.posterior_flows!r}")
        elif m.posterior_flows:
            raise TfvaeError(f"--posterior-flows needs --model {' or '.join(registry.with_capability(latent_groups=True))}")
        elif m.group_dims is not None or m.group_maps is not None:
            option = "--group-dims" if m.group_dims is not None else "--group-maps"
            raise TfvaeError(f"{option} needs --model {' or '.join(registry.with_capability(latent_groups=True))}")
        if not m.scale_floor > 0:
            raise TfvaeError(f"--scale-floor must be positive, got {m.scale_floor!r}")
        if d.binarization is not None:
            choice("binarization", d.binarization, BINARIZATIONS)
        if d.binarization in ("dynamic", "static") and m.likelihood == "gaussian":
            pass  # allowed: binary data under a Gaussian likelihood is odd but well defined
        if d.validation_size is not None and (isinstance(d.validation_size, bool)
                                              or not isinstance(d.validation_size, int) or d.validation_size < 0):
            raise TfvaeError(f"--validation-size must be a non-negative integer, got {d.validation_size!r}")
        positive_int("max_image_pixels", d.max_image_pixels)
        if d.max_train_examples is not None:
            positive_int("max_train_examples", d.max_train_examples)
        if d.image_dir is not None and d.idx_dir is not None:
            raise TfvaeError("--image-dir and --idx-dir are two sources of images; give one")
        if d.channels is not None and d.channels not in (1, 3):
            raise TfvaeError(f"--channels must be 1 or 3, got {d.channels!r}")
        if not (isinstance(d.test_fraction, (int, float)) and 0 < d.test_fraction < 1):
            raise TfvaeError(f"--test-fraction must be in (0, 1), got {d.test_fraction!r}")
        positive_int("epochs", t.epochs)
        positive_int("batch_size", t.batch_size)
        positive_int("mc_samples", t.mc_samples)
        if not (isinstance(t.learning_rate, (int, float)) and t.learning_rate > 0):
            raise TfvaeError(f"--learning-rate must be positive, got {t.learning_rate!r}")
        choice("lr_schedule", t.lr_schedule, LR_SCHEDULES)
        if isinstance(t.train_iw_samples, bool) or not isinstance(t.train_iw_samples, int) or t.train_iw_samples < 1:
            raise TfvaeError(f"--train-iw-samples must be an integer >= 1 (K importance samples), got {t.train_iw_samples!r}")
        if t.objective == "iwae":
            if t.free_bits:
                raise TfvaeError("--free-bits applies to the ELBO's KL term; the iwae objective has none")
        elif t.train_iw_samples != 1:
            raise TfvaeError("--train-iw-samples needs --objective iwae")
        if not (isinstance(t.free_bits, (int, float)) and t.free_bits >= 0):
            raise TfvaeError(f"--free-bits must be >= 0 nats per dimension, got {t.free_bits!r}")
        if t.free_bits and m.prior != "standard":
            raise TfvaeError("--free-bits needs --prior standard (the per-dimension KL is analytic only there)")
        if not (isinstance(t.ema_decay, (int, float)) and 0 <= t.ema_decay < 1):
            raise TfvaeError(f"--ema-decay must be in [0, 1), got {t.ema_decay!r}")
        if not (isinstance(t.weight_decay, (int, float)) and t.weight_decay >= 0):
            raise TfvaeError(f"--weight-decay must be a non-negative number, got {t.weight_decay!r}")
        if t.steps_per_execution is not None:
            positive_int("steps_per_execution", t.steps_per_execution)
        choice("precision", t.precision, PRECISIONS)
        if not (isinstance(t.beta, (int, float)) and t.beta >= 0):
            raise TfvaeError(f"--beta must be >= 0, got {t.beta!r}")
        if isinstance(t.kl_warmup_epochs, bool) or not isinstance(t.kl_warmup_epochs, int) or t.kl_warmup_epochs < 0:
            raise TfvaeError(f"--kl-warmup-epochs must be a non-negative integer, got {t.kl_warmup_epochs!r}")

    def _check_codebook(self) -> None:
        """The codebook options of a family with discrete codes, and its size against memory.

        Raises:
            TfvaeError: a non-positive size, a decay outside (0, 1), or a codebook whose
                float32 tables and one step's distance matrix need more than half the memory.
        """
        m, t = self.model, self.train
        if isinstance(m.codebook_size, bool) or not isinstance(m.codebook_size, int) or m.codebook_size < 2:
            raise TfvaeError(f"--codebook-size must be an integer >= 2, got {m.codebook_size!r}")
        if not 0 < m.codebook_decay < 1:
            raise TfvaeError(f"--codebook-decay must be in (0, 1), got {m.codebook_decay!r}")
        if not m.commitment >= 0:
            raise TfvaeError(f"--commitment must be >= 0, got {m.commitment!r}")
        for name in ("prior_width", "prior_layers"):
            if isinstance(getattr(m, name), bool) or not isinstance(getattr(m, name), int) or getattr(m, name) < 1:
                raise TfvaeError(f"{_option(name)} must be a positive integer, got {getattr(m, name)!r}")
        if m.prior_width % 4:
            raise TfvaeError(f"--prior-width must be a multiple of 4 (4 attention heads), got {m.prior_width}")
        cells = 1
        if m.image_shape:
            n = len(m.conv_filters or DEFAULT_CONV_FILTERS)
            cells = math.ceil(m.image_shape[0] / 2 ** n) * math.ceil(m.image_shape[1] / 2 ** n)
        need = 4 * (2 * m.codebook_size * m.latent_dim + m.codebook_size + t.batch_size * cells * m.codebook_size)
        memory = _physical_memory()
        if memory and need > memory // 2:
            raise TfvaeError(f"--codebook-size {m.codebook_size} with --latent-dim {m.latent_dim} and --batch-size "
                             f"{t.batch_size} needs {need / 2**30:.1f} GiB for the codebook and one step's distances; "
                             f"this machine has {memory / 2**30:.1f} GiB: use a smaller codebook or batch")

    def _check_types(self) -> None:
        """Each field's JSON type (a hand-edited or damaged config.json fails here, by name)."""
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v):
            return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)

        def opt_str(v):
            return v is None or isinstance(v, str)

        def int_list(v):
            return v is None or (isinstance(v, list) and all(is_int(x) for x in v))

        checks = {
            "data": {"dataset": (lambda v: isinstance(v, str) and v != "", "a non-empty string"),
                     "data_dir": (opt_str, "a string or null"), "idx_dir": (opt_str, "a string or null"),
                     "binarization": (opt_str, "a string or null"), "validation_size": (lambda v: v is None or is_int(v), "an integer or null"),
                     "split_seed": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
                     "binarization_seed": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
                     "max_train_examples": (lambda v: v is None or is_int(v), "an integer or null"),
                     "image_dir": (opt_str, "a string or null"),
                     "image_size": (lambda v: v is None or (isinstance(v, list) and len(v) == 2
                                                            and all(is_int(x) and 0 < x <= 4096 for x in v)),
                                    "[height, width] (positive integers) or null"),
                     "channels": (lambda v: v is None or v in (1, 3) and is_int(v), "1, 3 or null"),
                     "test_fraction": (lambda v: is_num(v) and 0 < v < 1, "a number in (0, 1)")},
            "model": {"model": (lambda v: isinstance(v, str), "a string"), "arch": (lambda v: isinstance(v, str), "a string"),
                      "latent_dim": (is_int, "an integer"), "likelihood": (lambda v: isinstance(v, str), "a string"),
                      "sigma": (lambda v: v == "learned" or is_num(v), "a finite number or 'learned'"),
                      "hidden_units": (int_list, "a list of integers or null"),
                      "conv_filters": (int_list, "a list of integers or null"),
                      "scale_floor": (is_num, "a finite number"), "prior": (lambda v: isinstance(v, str), "a string"),
                      "prior_components": (is_int, "an integer"),
                      "res_blocks": (is_int, "an integer"), "hvae_width": (is_int, "an integer"),
                      "codebook_size": (is_int, "an integer"), "commitment": (is_num, "a finite number"),
                      "codebook_decay": (is_num, "a finite number"), "prior_width": (is_int, "an integer"),
                      "prior_layers": (is_int, "an integer"),
                      "group_dims": (int_list, "a list of integers or null"),
                      "group_maps": (int_list, "a list of integers or null"),
                      "posterior_flows": (is_int, "an integer"),
                      "num_classes": (lambda v: is_int(v) and v >= 0, "an integer >= 0"),
                      "image_shape": (lambda v: v is None or (isinstance(v, list) and len(v) == 3
                                                              and all(is_int(x) and 0 < x <= 65536 for x in v)),
                                      "[height, width, channels] (positive integers) or null")},
            "train": {name: (is_int, "an integer") for name in (
                "epochs", "batch_size", "kl_warmup_epochs", "mc_samples", "train_iw_samples", "prior_epochs")},
        }
        checks["train"]["steps_per_execution"] = (lambda v: v is None or is_int(v), "an integer or null")
        checks["train"].update({name: (is_num, "a finite number") for name in (
            "learning_rate", "beta", "free_bits", "ema_decay", "weight_decay", "prior_learning_rate")})
        checks["train"].update({"objective": (lambda v: isinstance(v, str), "a string"),
                                "lr_schedule": (lambda v: isinstance(v, str), "a string"),
                                "precision": (lambda v: isinstance(v, str), "a string"),
                                "jit": (lambda v: isinstance(v, bool), "true or false"),
                                "seed": (lambda v: is_int(v) and 0 <= v < 2 ** 32, "an integer in [0, 2^32)")})
        for section, fields in checks.items():
            obj = getattr(self, section)
            for name, (ok, expected) in fields.items():
                value = getattr(obj, name)
                if not ok(value):
                    raise TfvaeError(f"{section}.{name} ({_option(name)}) must be {expected}, got {value!r}")
        if not isinstance(self.meta, dict):
            raise TfvaeError(f"meta must be a JSON object, got {type(self.meta).__name__}")
        names = self.meta.get("class_names")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise TfvaeError(f"meta.class_names must be a list of strings, got {names!r}")

    @classmethod
    def from_options(cls, values: dict) -> "RunConfig":
        """Build from ``train``'s options (a dict keyed by field name; extra keys ignored)."""
        sections = {}
        for key, section_cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
            names = {f.name for f in dataclasses.fields(section_cls)}
            sections[key] = section_cls(**{k: v for k, v in values.items() if k in names and k != "image_shape"})
        return cls(**sections)

    # ---- JSON round-trip -----------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict of the four sections (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Any, source: str = "config") -> "RunConfig":
        """Build from a dict such as ``json.load(config.json)``.

        Raises:
            TfvaeError: ``raw`` is not a dict, or a section has unknown keys.
        """
        if not isinstance(raw, dict):
            raise TfvaeError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        sections = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
        unknown = set(raw) - set(sections) - {"meta"}
        if unknown:
            raise TfvaeError(f"{source}: unknown section(s) {sorted(unknown)}; expected {sorted(sections) + ['meta']}")
        kwargs = {}
        for key, section_cls in sections.items():
            values = raw.get(key, {})
            if not isinstance(values, dict):
                raise TfvaeError(f"{source}: section {key!r} must be a JSON object")
            names = {f.name for f in dataclasses.fields(section_cls)}
            bad = set(values) - names
            if bad:
                raise TfvaeError(f"{source}: unknown key(s) {sorted(bad)} in section {key!r}")
            kwargs[key] = section_cls(**values)
        meta = raw.get("meta", {})
        if not isinstance(meta, dict):
            raise TfvaeError(f"{source}: section 'meta' must be a JSON object")
        kwargs["meta"] = dict(meta)
        return cls(**kwargs)

    def save(self, path: Union[str, Path]) -> None:
        """Write as JSON atomically (temporary file in the same folder, then rename)."""
        atomic_write_text(path, json_text(self.to_dict(), sort_keys=True))

    @classmethod
    def load(cls, path: Union[str, Path]) -> "RunConfig":
        """Read ``config.json``.

        Raises:
            TfvaeError: the file is missing, not JSON, or has unknown keys.
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text(), parse_constant=_reject_constant)
        except FileNotFoundError:
            raise TfvaeError(f"{path} is missing") from None
        except (OSError, ValueError) as exc:
            raise TfvaeError(f"{path}: not readable JSON ({' '.join(str(exc).split())[:160]})") from None
        return cls.from_dict(raw, source=str(path))


def estimate_training_bytes(cfg: "RunConfig") -> dict:
    """A lower estimate of one training step's memory (bytes), by what sizes it.

    float32 weights of the dense layers (encoder and decoder, input size H·W·C) counted
    four times (weights, gradients and Adam's two moments), and one step's activations
    (batch × samples × the layers' widths, or for convolutions H·W·filters at each halving),
    counted three times (forward, backward, the likelihood's parameters). Deliberately low:
    it only catches requests that cannot fit, before they crash the process.

    Returns:
        ``{"weights": bytes, "activations": bytes}``; empty when the image shape is unknown.
    """
    m, t = cfg.model, cfg.train
    if not m.image_shape:
        return {}
    h, w, c = (int(v) for v in m.image_shape)
    d = h * w * c
    samples = t.train_iw_samples if t.objective == "iwae" else t.mc_samples
    samples = max(1, int(samples or 1))
    if m.arch in ("conv", "resnet"):
        filters = list(m.conv_filters or DEFAULT_CONV_FILTERS)
        cells = [math.ceil(h / 2 ** (i + 1)) * math.ceil(w / 2 ** (i + 1)) * f for i, f in enumerate(filters)]
        dense = list(m.hidden_units or [])
        flat = cells[-1] if cells else d
        weights = sum(9 * a * b for a, b in zip([c] + filters, filters)) * 2 + flat * (dense[0] if dense else m.latent_dim) * 2
        per_image = 2 * d + 2 * sum(cells) + 2 * sum(dense)
    else:
        widths = [d] + list(m.hidden_units or []) + [m.latent_dim]
        weights = sum(a * b for a, b in zip(widths[:-1], widths[1:])) * 2
        per_image = 2 * d + 2 * sum(widths[1:-1])
    return {"weights": 4 * 4 * weights, "activations": 4 * 3 * t.batch_size * samples * per_image}


def check_training_memory(cfg: "RunConfig") -> None:
    """Refuse options that cannot fit in this machine's memory (:func:`estimate_training_bytes`),
    naming them, instead of a crash or a killed process mid-run.

    Raises:
        TfvaeError: the estimate exceeds the physical memory.
    """
    need = estimate_training_bytes(cfg)
    memory = _physical_memory()
    if not need or not memory or sum(need.values()) <= memory:
        return
    m, t = cfg.model, cfg.train
    sizing = ["--image-size" if cfg.data.image_dir else None,
              "--conv-filters" if m.arch in ("conv", "resnet") else None, "--hidden-units"]
    if need["activations"] >= need["weights"]:
        samples = "--train-iw-samples" if t.objective == "iwae" else "--mc-samples"
        many = (t.train_iw_samples if t.objective == "iwae" else t.mc_samples) or 1
        sizing = ([samples, "--batch-size"] if many > 1 else ["--batch-size"]) + sizing
    names = [n for n in sizing if n]
    raise TfvaeError(f"{names[0]}: a training step of this model needs at least {sum(need.values()) / 2**30:.1f} GiB "
                     f"(images {'×'.join(map(str, m.image_shape))}, --batch-size {t.batch_size}; weights "
                     f"{need['weights'] / 2**30:.1f} GiB, activations {need['activations'] / 2**30:.1f} GiB) and this "
                     f"machine has {memory / 2**30:.1f} GiB: lower {names[0]} (or {', '.join(names[1:])})")


def _physical_memory() -> int:
    """This machine's memory in bytes (0 when the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


PRESET_DIR = Path(__file__).parent / "presets"


def preset_names() -> list:
    """Names of the recipes in tfvae/presets/ (``<name>.json``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_preset(name: str) -> dict:
    """A named recipe: ``{"data": {...}, "model": {...}, "train": {...}}`` partial sections
    whose keys are field (= option) names.

    Raises:
        TfvaeError: unknown name, a file that is not a JSON object, or keys that are not options.
    """
    path = PRESET_DIR / f"{name}.json"
    if not path.is_file():
        raise TfvaeError(f"--preset must be one of {', '.join(preset_names())}, got {name!r}")
    try:
        raw = json.loads(path.read_text(), parse_constant=_reject_constant)
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TfvaeError(f"--preset {name}: {path} is not readable JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(raw, dict):
        raise TfvaeError(f"--preset {name}: {path} must hold a JSON object, got {type(raw).__name__}")
    raw.pop("description", None)
    RunConfig.from_dict(raw, source=str(path))  # unknown keys fail here
    return {k: v for k, v in raw.items() if k in ("data", "model", "train")}


def json_text(obj, sort_keys: bool = False) -> str:
    """Strict JSON text (indent 2, trailing newline): NaN and ±Infinity, which
    ``json.dumps`` would write as the non-standard tokens NaN / Infinity, become null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if hasattr(v, "item") and hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0:  # numpy scalars
            return clean(v.item())
        return v

    return json.dumps(clean(obj), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"


def atomic_savez(path: Union[str, Path], **arrays) -> None:
    """``numpy.savez`` to a temporary file beside ``path``, then rename (old file kept on failure)."""
    import numpy as np

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the process's umask applied (what ``open`` would give a new file)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half.

    The new file gets the user's umask (``mkstemp`` alone would make it 0600). On any
    error (a full disk, a read-only folder) the temporary file is removed and the old
    file is left as it was.

    Raises:
        OSError: the folder cannot be written (the caller's one-line error names the path).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

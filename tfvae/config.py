"""Typed run configuration: one dataclass per concern, JSON round-trip, validation.

Every CLI option of ``train`` maps to exactly one field here (the option is the field
name with ``-`` for ``_``), so validation errors name the option the user typed.
``config.json`` in a run directory holds a :class:`RunConfig`; it is all that is
needed to rebuild the model and its data pipeline.

This module imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from .errors import TfvaeError

ARCHITECTURES = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian")
BINARIZATIONS = ("dynamic", "static", "none")

# Layer widths used when the user does not give them (see networks.py).
DEFAULT_HIDDEN_UNITS = {"mlp": [512, 256], "conv": [512]}
DEFAULT_CONV_FILTERS = [32, 64]


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
        validation_size: images carved from the training split for validation.
        split_seed: seed of the permutation that carves the validation split.
        binarization_seed: seed of the single Bernoulli draw that binarizes the
            validation and test images under ``dynamic`` binarization (held-out data
            is binarized once, so every evaluation sees the same images).
        max_train_examples: use only the first N training images (quick runs, tests).
    """

    dataset: str = "mnist"
    data_dir: Optional[str] = None
    idx_dir: Optional[str] = None
    binarization: Optional[str] = None
    validation_size: int = 5000
    split_seed: int = 0
    binarization_seed: int = 0
    max_train_examples: Optional[int] = None


@dataclass
class ModelConfig:
    """The VAE's networks and distributions.

    Attributes:
        arch: ``conv`` or ``mlp``; both are sized from ``image_shape``.
        latent_dim: dimension D of z.
        likelihood: ``bernoulli`` (decoder gives logits) or ``gaussian``.
        sigma: Gaussian likelihood's standard deviation: a positive float (fixed;
            σ² is the constant that balances reconstruction against KL) or the
            string ``"learned"`` (one learned σ per pixel).
        hidden_units: dense layer widths (MLP layers; for ``conv``, the dense layers
            between the convolutions and the latent code).
        conv_filters: filters of the stride-2 convolutions (``conv`` only).
        scale_floor: added to softplus(·) so the posterior (and learned likelihood)
            scale never reaches 0.
        image_shape: (H, W, C), filled in from the data when training starts.
    """

    arch: str = "conv"
    latent_dim: int = 32
    likelihood: str = "bernoulli"
    sigma: Union[float, str] = 0.1
    hidden_units: Optional[list] = None
    conv_filters: Optional[list] = None
    scale_floor: float = 1e-4
    image_shape: Optional[list] = None


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
        jit: compile the train/test steps with XLA.
        seed: seed of weights initialisation, shuffling, dynamic binarization and z samples.
    """

    epochs: int = 100
    batch_size: int = 128
    learning_rate: float = 1e-3
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    mc_samples: int = 1
    jit: bool = False
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
            cfg.data.binarization = "dynamic" if cfg.model.likelihood == "bernoulli" else "none"
        if cfg.model.hidden_units is None:
            cfg.model.hidden_units = list(DEFAULT_HIDDEN_UNITS.get(cfg.model.arch, [256]))
        if cfg.model.conv_filters is None:
            cfg.model.conv_filters = list(DEFAULT_CONV_FILTERS)
        return cfg

    def validate(self) -> None:
        """Check every field's range.

        Raises:
            TfvaeError: naming the option and what was expected, for the first bad field.
        """
        d, m, t = self.data, self.model, self.train

        def positive_int(name, value):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise TfvaeError(f"{_option(name)} must be a positive integer, got {value!r}")

        def choice(name, value, choices):
            if value not in choices:
                raise TfvaeError(f"{_option(name)} must be one of {', '.join(choices)}, got {value!r}")

        positive_int("latent_dim", m.latent_dim)
        choice("arch", m.arch, ARCHITECTURES)
        choice("likelihood", m.likelihood, LIKELIHOODS)
        if isinstance(m.sigma, str):
            if m.sigma != "learned":
                raise TfvaeError(f"--sigma must be a positive number or 'learned', got {m.sigma!r}")
        elif not (isinstance(m.sigma, (int, float)) and m.sigma > 0):
            raise TfvaeError(f"--sigma must be a positive number or 'learned', got {m.sigma!r}")
        for name in ("hidden_units", "conv_filters"):
            value = getattr(m, name)
            if value is not None and (not value or any(not isinstance(v, int) or v <= 0 for v in value)):
                raise TfvaeError(f"{_option(name)} must be a list of positive integers, got {value!r}")
        if not m.scale_floor > 0:
            raise TfvaeError(f"--scale-floor must be positive, got {m.scale_floor!r}")
        if d.binarization is not None:
            choice("binarization", d.binarization, BINARIZATIONS)
        if d.binarization in ("dynamic", "static") and m.likelihood == "gaussian":
            pass  # allowed: binary data under a Gaussian likelihood is odd but well defined
        if isinstance(d.validation_size, bool) or not isinstance(d.validation_size, int) or d.validation_size < 0:
            raise TfvaeError(f"--validation-size must be a non-negative integer, got {d.validation_size!r}")
        if d.max_train_examples is not None:
            positive_int("max_train_examples", d.max_train_examples)
        positive_int("epochs", t.epochs)
        positive_int("batch_size", t.batch_size)
        positive_int("mc_samples", t.mc_samples)
        if not (isinstance(t.learning_rate, (int, float)) and t.learning_rate > 0):
            raise TfvaeError(f"--learning-rate must be positive, got {t.learning_rate!r}")
        if not (isinstance(t.beta, (int, float)) and t.beta >= 0):
            raise TfvaeError(f"--beta must be >= 0, got {t.beta!r}")
        if isinstance(t.kl_warmup_epochs, bool) or not isinstance(t.kl_warmup_epochs, int) or t.kl_warmup_epochs < 0:
            raise TfvaeError(f"--kl-warmup-epochs must be a non-negative integer, got {t.kl_warmup_epochs!r}")

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
        kwargs["meta"] = dict(raw.get("meta", {}))
        return cls(**kwargs)

    def save(self, path: Union[str, Path]) -> None:
        """Write as JSON atomically (temporary file in the same folder, then rename)."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "RunConfig":
        """Read ``config.json``.

        Raises:
            TfvaeError: the file is missing, not JSON, or has unknown keys.
        """
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise TfvaeError(f"{path} is missing") from None
        except (OSError, ValueError) as exc:
            raise TfvaeError(f"{path}: not readable JSON ({exc})") from None
        return cls.from_dict(raw, source=str(path))


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

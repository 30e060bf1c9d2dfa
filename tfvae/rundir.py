"""Run directories: the self-describing folder a training run leaves behind.

    RUN_DIR/
      config.json                  RunConfig: all that is needed to rebuild the model
      checkpoints/best.weights.h5  weights with the lowest validation −ELBO
      checkpoints/last.weights.h5  weights after the last completed epoch
      metrics.csv                  one row per epoch (train and val_ metrics, seconds)
      summary.json                 timings of the training run
      eval.json                    written by ``evaluate`` (protocol + metrics)
      figures/                     reconstructions.png, samples.png, loss.png

Everything downstream of training (evaluate, sample, export) reads this folder, never
the training process.
"""

from __future__ import annotations

from pathlib import Path

from .config import RunConfig
from .errors import TfvaeError
from .models import registry

CONFIG = "config.json"
CODE_GAUSSIAN = "code_gaussian.npz"  # an autoencoder's Gaussian fitted to its training codes
CHECKPOINTS = ("best", "last")


def checkpoint_path(run_dir, which: str = "best") -> Path:
    """RUN_DIR/checkpoints/<which>.weights.h5 (``which``: ``best`` or ``last``)."""
    return Path(run_dir) / "checkpoints" / f"{which}.weights.h5"


def new_run_dir(path) -> Path:
    """Create an empty run directory.

    Raises:
        TfvaeError: the path already exists (a run directory is never overwritten),
            or cannot be created.
    """
    path = Path(path)
    if path.exists():
        raise TfvaeError(f"--run-dir {path} already exists; choose a new --run-dir (runs are never overwritten)")
    try:
        (path / "checkpoints").mkdir(parents=True)
        (path / "figures").mkdir()
    except OSError as exc:
        raise TfvaeError(f"--run-dir {path}: cannot create it ({exc.strerror})") from None
    return path


def read_config(run_dir) -> RunConfig:
    """Read and validate ``RUN_DIR/config.json``.

    Raises:
        TfvaeError: the folder is not a run directory (names the missing file), or the
            config is malformed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TfvaeError(f"{run_dir} is not a folder")
    if not (run_dir / CONFIG).is_file():
        raise TfvaeError(f"{run_dir} is not a tfvae run directory: {CONFIG} is missing")
    cfg = RunConfig.load(run_dir / CONFIG)
    cfg.validate()
    if cfg.model.image_shape is None:
        raise TfvaeError(f"{run_dir / CONFIG}: model.image_shape is missing")
    return cfg


def load_model(run_dir, which: str = "best"):
    """Rebuild the VAE from ``config.json`` and load a checkpoint.

    Args:
        which: ``best`` (lowest validation −ELBO) or ``last``; ``best`` falls back to
            ``last`` when absent.

    Returns:
        (model, RunConfig): the family's Keras model (:func:`tfvae.models.build_model`), or
        what a closed-form family's ``load`` returns (``pca``: :class:`tfvae.models.pca.PPCA`).

    Raises:
        TfvaeError: missing config or checkpoint, or weights that do not fit the config.
    """
    cfg = read_config(run_dir)
    family = registry.of(cfg)
    if not family.keras:
        return family.resolve("load")(run_dir, cfg), cfg
    path = checkpoint_path(run_dir, which)
    if which == "best" and not path.is_file():
        path = checkpoint_path(run_dir, "last")
    if not path.is_file():
        raise TfvaeError(f"{run_dir} is not a complete run: {path.relative_to(run_dir)} is missing")
    t = cfg.train
    model = registry.build_model(cfg.model, beta=t.beta, mc_samples=t.mc_samples, seed=t.seed, objective=t.objective,
                        iw_samples=t.train_iw_samples, free_bits=t.free_bits,
                        dataset_size=int(cfg.meta.get("num_train") or 1))
    try:
        model.load_weights(str(path))
    except Exception as exc:  # h5py / keras raise many types for a bad file
        raise TfvaeError(f"{path}: cannot load weights ({' '.join(str(exc).split())[:200]})") from None
    model.restore_artifacts(run_dir)  # an autoencoder's code Gaussian, a VQ-VAE's prior
    return model, cfg


def check_label(cfg: RunConfig, label: int) -> None:
    """Raises TfvaeError unless the run's family is conditional and 0 <= label < num_classes."""
    registry.require(cfg, "conditional", "--label", "labels (a conditional model)")
    if not 0 <= label < cfg.model.num_classes:
        raise TfvaeError(f"--label must be a class in 0..{cfg.model.num_classes - 1}, got {label}")

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

CONFIG = "config.json"
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
        (model, RunConfig): a :class:`tfvae.models.VAE` (``vae``, ``cvae``), an
        :class:`tfvae.models.Autoencoder` (``ae``) or a :class:`tfvae.pca.PPCA` (``pca``).

    Raises:
        TfvaeError: missing config or checkpoint, or weights that do not fit the config.
    """
    cfg = read_config(run_dir)
    if cfg.model.model == "pca":
        from .pca import load_pca

        return load_pca(run_dir), cfg
    path = checkpoint_path(run_dir, which)
    if which == "best" and not path.is_file():
        path = checkpoint_path(run_dir, "last")
    if not path.is_file():
        raise TfvaeError(f"{run_dir} is not a complete run: {path.relative_to(run_dir)} is missing")
    from .models import build_model

    t = cfg.train
    model = build_model(cfg.model, beta=t.beta, mc_samples=t.mc_samples, seed=t.seed, objective=t.objective,
                        iw_samples=t.train_iw_samples, free_bits=t.free_bits,
                        dataset_size=int(cfg.meta.get("num_train") or 1))
    try:
        model.load_weights(str(path))
    except Exception as exc:  # h5py / keras raise many types for a bad file
        raise TfvaeError(f"{path}: cannot load weights ({' '.join(str(exc).split())[:200]})") from None
    gaussian = Path(run_dir) / "code_gaussian.npz"
    if cfg.model.model == "ae" and gaussian.is_file():
        import numpy as np

        with np.load(gaussian) as f:
            model.code_gaussian = (f["mean"], f["cov"])
    return model, cfg


def check_label(cfg: RunConfig, label: int) -> None:
    """Raises TfvaeError unless the run is a conditional VAE and 0 <= label < num_classes."""
    if cfg.model.model != "cvae":
        raise TfvaeError(f"--label needs a conditional VAE (--model cvae); this run is --model {cfg.model.model}")
    if not 0 <= label < cfg.model.num_classes:
        raise TfvaeError(f"--label must be a class in 0..{cfg.model.num_classes - 1}, got {label}")

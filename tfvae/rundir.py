"""Run directories: the self-describing folder a training run leaves behind.

    RUN_DIR/
      config.json                  RunConfig: all that is needed to rebuild the model
      checkpoints/best.weights.h5  weights with the lowest validation −ELBO
      checkpoints/last.weights.h5  weights after the last completed epoch
      metrics.csv                  one row per epoch (train and val_ metrics, seconds)
      summary.json                 timings of the training run
      eval.json                    written by ``evaluate`` (protocol + metrics)
      checkpoints/model_config.json  the model section the checkpoints were trained with
      test_files.json              an image folder's test split (paths relative to the folder)
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


TRAINED_MODEL = "checkpoints/model_config.json"
TEST_FILES = "test_files.json"


def record_trained_config(run_dir, cfg: RunConfig, test_files=None) -> None:
    """Write what later commands check against a run's ``config.json``: the model section
    the checkpoints are trained with (:data:`TRAINED_MODEL`), and an image folder's test
    split (:data:`TEST_FILES`, relative paths), both atomically."""
    import dataclasses

    from .config import atomic_write_text, json_text

    atomic_write_text(Path(run_dir) / TRAINED_MODEL, json_text(dataclasses.asdict(cfg.model), sort_keys=True))
    if test_files is not None:
        atomic_write_text(Path(run_dir) / TEST_FILES, json_text({"image_dir": cfg.data.image_dir,
                                                                 "test_files": list(test_files)}))


def check_trained_config(run_dir, cfg: RunConfig) -> None:
    """Refuse a ``config.json`` whose model section was edited after training.

    A field the record lacks was added to :class:`~tfvae.config.ModelConfig` after the run
    was trained: the code that trained it behaved as the field's default, so the default is
    what it is checked against.

    Raises:
        TfvaeError: names the first field whose value differs from the one the checkpoints
            were trained with (runs older than this record are not checked).
    """
    import dataclasses
    import json

    from .config import ModelConfig

    path = Path(run_dir) / TRAINED_MODEL
    try:
        trained = json.loads(path.read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError, RecursionError):
        raise TfvaeError(f"{path} is damaged (not readable JSON)") from None
    now = dataclasses.asdict(cfg.model)
    if isinstance(trained, dict):
        trained = {**dataclasses.asdict(ModelConfig()), **trained}
    for key in sorted(set(now) | set(trained if isinstance(trained, dict) else {})):
        if not isinstance(trained, dict) or now.get(key) != trained.get(key):
            was = trained.get(key) if isinstance(trained, dict) else None
            raise TfvaeError(f"{Path(run_dir) / CONFIG}: model.{key} is {now.get(key)!r}, but the checkpoints were "
                             f"trained with {was!r}; config.json was edited after training (restore {key})")


def run_dataset(run_dir, cfg: RunConfig, need_test: bool = True):
    """The run's data (:func:`tfvae.data.load_dataset`), with an image folder's test split
    as the run recorded it (:data:`TEST_FILES`), so later commands evaluate on the images
    the run was trained without even after files were added to the folder.

    Raises:
        TfvaeError: as :func:`tfvae.data.load_dataset`; the recorded file is damaged, or the
            folder no longer holds a recorded test file.
    """
    import json

    from .data import load_dataset

    test_files = None
    path = Path(run_dir) / TEST_FILES
    if cfg.data.image_dir and path.is_file():
        try:
            record = json.loads(path.read_text())
            test_files = [str(f) for f in record["test_files"]]
        except (OSError, ValueError, RecursionError, KeyError, TypeError):
            raise TfvaeError(f"{path} is damaged (expected {{\"test_files\": [relative paths]}})") from None
    return load_dataset(cfg.data, need_test=need_test, test_files=test_files)


def load_model(run_dir, which: str = "best"):
    """Rebuild the VAE from ``config.json`` and load a checkpoint.

    Args:
        which: ``best`` (lowest validation −ELBO) or ``last``; ``best`` falls back to
            ``last`` when absent.

    Returns:
        (model, RunConfig): the family's Keras model (:func:`tfvae.models.build_model`), or
        what a closed-form family's ``load`` returns (``pca``: :class:`tfvae.models.pca.PPCA`).

    Raises:
        TfvaeError: missing config or checkpoint, a model section edited after training
            (:func:`check_trained_config`), or weights that do not fit the config.
    """
    cfg = read_config(run_dir)
    check_trained_config(run_dir, cfg)
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

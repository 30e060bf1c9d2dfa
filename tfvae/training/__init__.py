"""Training: data -> model -> Keras ``fit`` (or the multi-worker loop) -> a run directory.

* :mod:`tfvae.training.run`: :func:`train`, the whole run.
* :mod:`tfvae.training.setup`: the strategy, resume checks, the data, ``config.json``.
* :mod:`tfvae.training.fit`: the model and optimizer, the pipelines, the callbacks, the
  epochs and ``summary.json``.
* :mod:`tfvae.training.callbacks`, :mod:`tfvae.training.monitor` (per-epoch figures, the
  one-line epoch log, TensorBoard), :mod:`tfvae.training.figures`,
  :mod:`tfvae.training.multiworker` (the custom loop under ``MultiWorkerMirroredStrategy``).

Training imports no command module; every family trains through the same step
(:meth:`tfvae.models.base.FamilyModel.apply_step`).
"""

from __future__ import annotations

import importlib

# Imported on first use, so that ``tfvae.training.multiworker`` (read by the CLI before
# TensorFlow is quieted) does not import TensorFlow through this package.
_LAZY = {"train": "run", "make_optimizer": "fit", "EMAForEvaluation": "fit", "resolve_speed": "setup",
         "make_strategy": "setup", "STRATEGIES": "setup", "Interrupted": "setup", "TrainingDiverged": "setup",
         "default_run_dir": "setup", "check_resumable": "setup"}

__all__ = list(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

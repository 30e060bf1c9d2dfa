"""Run setup and resume: the strategy, the run directory, the data and ``config.json``.

:func:`open_run` does everything ``train`` does before the model exists: it checks a
``--resume`` (damaged backups and metrics are refused before anything is touched), loads
the data, fills in ``config.json``'s facts (image shape, classes, split sizes, versions) and
creates and locks a new run directory.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from .. import __version__
from ..config import (AUTO_STEPS_PER_EXECUTION, RunConfig, check_training_memory, _reject_constant, atomic_write_text,
                      latent_group_sizes)
from ..data import load_dataset
from ..errors import TfvaeError
from ..hardware import check_precision
from ..locks import folder_lock
from ..models import registry
from ..rundir import check_trained_config, record_trained_config, new_run_dir, read_config


def _git_commit():
    """HEAD's hash, with "+dirty" when tracked files changed; None outside a git checkout."""
    from ..provenance import git_commit

    g = git_commit()
    return None if g["commit"] is None else g["commit"] + ("+dirty" if g["dirty"] else "")


def default_run_dir(cfg: RunConfig) -> Path:
    """runs/<dataset>-<arch>-z<D>-<YYYYmmdd-HHMMSS>."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.arch}-z{cfg.model.latent_dim}-{stamp}"


STRATEGIES = ("default", "mirrored", "multiworker")


class Interrupted(TfvaeError):
    """Ctrl-C or SIGTERM stopped training after an epoch's backup; exit status 130 or 143."""

    exit_code = 130


class TrainingDiverged(TfvaeError):
    """The loss became NaN or Inf; exit status 3."""

    exit_code = 3


def make_strategy(name: str, devices=None):
    """The ``tf.distribute`` strategy for ``--strategy``.

    * ``default``: one device (TensorFlow's default strategy).
    * ``mirrored``: ``MirroredStrategy`` over all local GPUs, or ``devices``
      (e.g. ``["/gpu:0", "/gpu:1"]``); synchronous data parallelism in one process.
    * ``multiworker``: ``MultiWorkerMirroredStrategy`` configured by ``TF_CONFIG``, any
      number of workers, trained by the custom loop of ``tfvae.training.multiworker`` (Keras 3
      ``fit`` cannot run under it: keras-team/keras#20585).

    Raises:
        TfvaeError: unknown name, devices given without ``mirrored``, a bad ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise TfvaeError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if devices and name != "mirrored":
        raise TfvaeError("--devices needs --strategy mirrored")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) if devices else None)
    if name == "multiworker":
        from .multiworker import multiworker_strategy

        return multiworker_strategy()
    return tf.distribute.get_strategy()


def _completed_epochs(run_dir: Path) -> int:
    """Epochs saved in the run's BackupAndRestore state (0 when there is none)."""
    path = run_dir / "backup" / "training_metadata.json"
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _read_metrics(path: Path):
    """(header, rows) of metrics.csv, checked: an ``epoch`` column, every row as long as
    the header, epochs 0, 1, 2, ... in order, every other cell a number or empty.

    Raises:
        TfvaeError: names the file, the line and what is wrong.
    """
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TfvaeError(f"{path}: cannot be read ({exc}); refusing to resume, nothing was changed") from None
    if not rows or "epoch" not in rows[0]:
        raise TfvaeError(f"{path}: no header with an 'epoch' column; refusing to resume, nothing was changed")
    header, body = rows[0], rows[1:]
    col = header.index("epoch")
    for line, row in enumerate(body, start=2):
        bad = len(row) != len(header)
        if not bad:
            try:
                bad = int(row[col]) != line - 2
                for cell in row:
                    if cell not in ("", "nan", "inf", "-inf"):
                        float(cell)
            except ValueError:
                bad = True
        if bad:
            raise TfvaeError(f"{path}, line {line}: malformed or out-of-order row (expected epoch {line - 2}, "
                             f"{len(header)} columns); refusing to resume, nothing was changed")
    return header, body


def _valid_backup(weights: Path, metadata: Path, epochs: int):
    """The epoch a backup pair (weights .h5, training_metadata.json) holds, or None when
    either file is missing or damaged."""
    try:
        meta = json.loads(metadata.read_text(), parse_constant=_reject_constant)
        epoch = meta["epoch"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= epochs:
            return None
        import h5py

        with h5py.File(weights, "r") as f:
            if not len(f.keys()):
                return None
        return epoch
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def check_resumable(run_dir: Path, cfg: RunConfig) -> None:
    """Refuse a ``--resume`` whose state is damaged, before anything is touched.

    Checks ``metrics.csv`` (:func:`_read_metrics`) and the ``backup/`` pair; when the
    latest backup is damaged (a kill while it was written) and its previous copy
    (``.bkp``, Keras's double checkpoint) is whole, the copy is used.

    Raises:
        TfvaeError: a damaged ``metrics.csv``, a backup with neither a whole latest pair nor
            a whole previous pair, or fewer ``metrics.csv`` rows than completed epochs.
    """
    backup = run_dir / "backup"
    weights, meta = backup / "latest.weights.h5", backup / "training_metadata.json"
    done = 0
    if weights.exists() or meta.exists():
        done = _valid_backup(weights, meta, cfg.train.epochs)
        if done is None:
            prev = _valid_backup(Path(f"{weights}.bkp"), Path(f"{meta}.bkp"), cfg.train.epochs)
            if prev is None:
                raise TfvaeError(f"--resume {run_dir}: the backup in {backup} is damaged (and so is its previous "
                                 f"copy); refusing to resume, nothing was changed")
            for name in (weights, meta):
                tmp = name.with_name(f".{name.name}.restore")
                shutil.copyfile(f"{name}.bkp", tmp)
                os.replace(tmp, name)
            print(f"resume: the latest backup was damaged; using the previous copy (epoch {prev})", file=sys.stderr)
            done = prev
    metrics = run_dir / "metrics.csv"
    rows = 0
    if metrics.exists():
        rows = len(_read_metrics(metrics)[1])
    if rows < done:
        raise TfvaeError(f"--resume {run_dir}: metrics.csv has {rows} rows but the backup holds {done} completed "
                         f"epochs; refusing to resume, nothing was changed")


def _truncate_metrics(path: Path, epochs: int, monitor: str = "val_neg_elbo") -> float:
    """Keep the header and the rows of epochs < ``epochs`` (a resumed run rewrites the
    rest; the file is replaced atomically, never truncated in place); return the best
    ``monitor`` value among the kept rows."""
    if not path.is_file():
        return math.inf
    header, rows = _read_metrics(path)
    body = [r for r in rows if int(r[header.index("epoch")]) < epochs]
    if len(body) != len(rows):
        import io

        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([header] + body)
        atomic_write_text(path, buf.getvalue())
    col = header.index(monitor) if monitor in header else None
    values = [float(r[col]) for r in body if col is not None and r[col] not in ("", "nan")]
    return min(values, default=math.inf)


def resolve_speed(t, steps_per_epoch: int, multi: bool) -> None:
    """Fill in ``steps_per_execution`` in the TrainConfig ``t``: None (auto) is
    :data:`tfvae.config.AUTO_STEPS_PER_EXECUTION`, 1 under the multi-worker loop; the value
    is then lowered to the largest divisor of ``steps_per_epoch`` not above it, because
    Keras runs whole calls of N steps and an epoch of 8 steps would otherwise take 9
    updates with N = 3 (or 70 with N = 70): an epoch is the same updates for every N.
    ``config.json`` records the value used."""
    wanted = (1 if multi else AUTO_STEPS_PER_EXECUTION) if t.steps_per_execution is None else t.steps_per_execution
    wanted = max(1, min(int(wanted), steps_per_epoch))
    t.steps_per_execution = max(d for d in range(1, wanted + 1) if steps_per_epoch % d == 0)



@dataclass
class Run:
    """What :func:`open_run` prepared: the resolved ``cfg`` (``config.json``), ``run_dir``,
    ``data`` (a :class:`tfvae.data.Dataset`), the tf.distribute ``distribution``, whether this
    process is the ``chief`` (the one that writes), ``multi`` (the multi-worker loop), and
    ``start_epoch`` (0, or the epochs a resumed run already completed)."""

    cfg: RunConfig
    run_dir: Path
    data: object
    distribution: object
    chief: bool
    multi: bool
    start_epoch: int


def open_run(cfg: RunConfig, run_dir, command_line, resume: bool, strategy: str, devices, deterministic: bool,
             resume_learning_rate, locks, created) -> Run:
    """Set a training run up (see the module docstring); the arguments are :func:`tfvae.training.train`'s.

    Raises:
        TfvaeError: bad configuration, missing data, an existing run directory, or (with
            ``resume``) a folder that is not an unfinished run.
    """
    multi = strategy == "multiworker"
    distribution = make_strategy(strategy, devices) if multi else None  # before TensorFlow's first op
    chief = True
    if multi:
        from .multiworker import is_chief

        chief = is_chief(distribution)
    if resume:
        if run_dir is None:
            raise TfvaeError("--resume needs the run directory")
        run_dir = Path(run_dir)
        cfg = read_config(run_dir)
        if not chief:  # the other workers read the run's config.json and write nothing
            resume_learning_rate = None
    if resume and chief:
        _check_resume(run_dir, cfg, resume_learning_rate, locks)
    elif resume_learning_rate is not None:
        raise TfvaeError("resume_learning_rate needs resume")
    cfg = cfg.resolved()
    cfg.validate()
    if not resume:
        run_dir = Path(run_dir) if run_dir else default_run_dir(cfg)
        if run_dir.exists() and chief:  # checked before the data loads, and again when it is created
            raise TfvaeError(f"--run-dir {run_dir} already exists; choose a new --run-dir (runs are never overwritten)")
    if cfg.data.validation_size == 0:  # None: the default, min(5000, a tenth of the training split)
        raise TfvaeError("--validation-size must be at least 1 (validation −ELBO picks the best checkpoint)")
    if distribution is None:
        distribution = make_strategy(strategy, devices)
    t = cfg.train
    check_precision(t.precision)
    if multi:
        from .multiworker import refuse_unsupported

        refuse_unsupported(t.jit, t.steps_per_execution)
    if deterministic:
        tf.config.experimental.enable_op_determinism()

    data = load_dataset(cfg.data, announce=chief and not resume)
    if multi:  # one all-reduce: workers started with different options stop here, before any folder is made
        from .multiworker import check_workers_agree

        check_workers_agree(distribution, cfg, data)
    family = registry.of(cfg)
    if family.conditional and not resume:
        if data.train_labels is None or not data.class_names:
            raise TfvaeError(f"--model {family.name} needs labels; dataset {cfg.data.dataset} has none")
        cfg.model.num_classes = len(data.class_names)
    if resume and data.source and data.source["fingerprint"] != cfg.meta.get("image_folder", {}).get("fingerprint"):
        raise TfvaeError(f"--resume {run_dir}: the files in {cfg.data.image_dir} changed since the run started "
                         f"({data.source['files']} decodable files now, {cfg.meta.get('image_folder', {}).get('files')} "
                         "then); an exact resume needs the same files")
    start_epoch = 0
    if not resume:
        _record_facts(cfg, data, deterministic, strategy, command_line)
        check_training_memory(cfg)  # before the model is built and before the run folder is made
        resolve_speed(t, math.ceil(len(data.train) / t.batch_size), multi)
        if chief:
            run_dir = new_run_dir(run_dir)
            if created is not None:
                created.append(run_dir)
            locks.enter_context(folder_lock(run_dir, "train"))
            cfg.save(run_dir / "config.json")
            record_trained_config(run_dir, cfg, data.source.get("test_files"))
    else:
        if list(data.image_shape) != list(cfg.model.image_shape):
            raise TfvaeError(f"--resume {run_dir}: the data now has shape {data.image_shape}, "
                             f"the run was trained on {tuple(cfg.model.image_shape)}")
        start_epoch = _completed_epochs(run_dir) if chief else 0
    if multi:
        from .multiworker import broadcast_from_chief, check_last_batch

        check_last_batch(len(data.train), t.batch_size, distribution.num_replicas_in_sync)
        start_epoch = int(broadcast_from_chief(distribution, [], chief, extra=start_epoch))
    return Run(cfg, run_dir, data, distribution, chief, multi, start_epoch)


def _check_resume(run_dir: Path, cfg: RunConfig, resume_learning_rate, locks) -> None:
    """Lock the run, refuse a finished or damaged one, and record a changed learning rate."""
    locks.enter_context(folder_lock(run_dir, "train --resume"))
    if (run_dir / "summary.json").is_file():
        raise TfvaeError(f"--resume {run_dir}: the run already finished all {cfg.train.epochs} epochs")
    check_resumable(run_dir, cfg)
    check_trained_config(run_dir, cfg)
    if resume_learning_rate is not None and cfg.train.lr_schedule != "constant":
        raise TfvaeError(f"--learning-rate cannot be changed on resume with --lr-schedule {cfg.train.lr_schedule}")
    if resume_learning_rate is not None and resume_learning_rate != cfg.train.learning_rate:
        cfg.meta.setdefault("learning_rate_changes", []).append(
            {"from_epoch": _completed_epochs(run_dir), "old": cfg.train.learning_rate, "new": resume_learning_rate})
        cfg.train.learning_rate = resume_learning_rate
        cfg.validate()
        cfg.save(run_dir / "config.json")


def _record_facts(cfg: RunConfig, data, deterministic: bool, strategy: str, command_line) -> None:
    """Fill in what a new run's ``config.json`` records about its data and machine."""
    cfg.model.image_shape = list(data.image_shape)
    if registry.of(cfg).latent_groups:  # the latent maps' sizes follow from the image shape
        cfg.model.latent_dim = sum(latent_group_sizes(cfg.model))
    if cfg.data.validation_size is None:  # the default: record the number it gave for this training split
        cfg.data.validation_size = int(len(data.validation))
        cfg.meta["validation_size_rule"] = "default: min(5000, a tenth of the training split)"
    if data.source:  # an image folder: fix what was inferred, so every later command reads the same
        cfg.data.image_size = list(data.source["image_size"])
        cfg.data.channels = int(data.source["channels"])
        cfg.meta["image_folder"] = {k: data.source[k] for k in (
            "layout", "files", "skipped_files", "skipped_examples", "fingerprint")}
    cfg.meta.update({
        "class_names": data.class_names,
        "num_train": int(len(data.train)),
        "num_validation": int(len(data.validation)),
        "num_test": None if data.test is None else int(len(data.test)),
        "seed": cfg.train.seed,
        "deterministic": bool(deterministic),
        "strategy": strategy,
        "tfvae_version": __version__,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "python_version": platform.python_version(),
        "command_line": command_line or " ".join(sys.argv),
        "git_commit": _git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })

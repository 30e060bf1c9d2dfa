"""Image data: TFDS datasets by name, a folder of MNIST-format IDX files, a folder of
image files (PNG, JPEG, BMP, GIF; streamed from disk, see ``folder.py``), or ``dsprites``,
rendered in memory with known factors (see ``dsprites.py``).

Images are kept as uint8 arrays [N, H, W, C] (small and cache-friendly) and turned
into float32 in [0, 1] inside the ``tf.data`` pipeline, where binarization happens:

* ``dynamic``: each time a training image is seen, pixel x ~ Bernoulli(grey level)
  (the protocol of Burda et al. 2015 for "dynamically binarized MNIST"). Held-out
  images (validation, test) are binarized once, with ``binarization_seed``, so every
  evaluation sees the same binary images.
* ``static``: pixel = 1 if grey level > 0.5 else 0.
* ``none``: grey levels in [0, 1].

The validation split is carved from the training split by a seeded permutation
(``split_seed``); the test split is read only by ``evaluate`` (and for pictures).
"""

from __future__ import annotations

import difflib
import gzip
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from .config import DataConfig
from .errors import DataNotFoundError, TfvaeError

_HOW_TO_PROVIDE = (
    "set TFDS_DATA_DIR or --data-dir to a folder holding the prepared TFDS dataset, "
    "or pass --idx-dir with MNIST-format IDX files"
)


@dataclass
class ImageData:
    """Splits of one image dataset.

    Attributes:
        name: dataset name.
        train, validation, test: uint8 arrays [N, H, W, C] (``test`` may be None).
        train_labels, validation_labels, test_labels: int64 arrays [N] (or None).
        class_names: one name per label value.
        source: facts about an image folder (``layout``, ``fingerprint``, ``skipped``,
            ``image_size``, ``channels``), empty for TFDS and IDX data.

    For an image folder, ``train`` and ``test`` are :class:`tfvae.folder.FileImages`
    (array-like; pixels decoded when used) rather than arrays.
    """

    name: str
    train: np.ndarray
    train_labels: Optional[np.ndarray]
    validation: np.ndarray
    validation_labels: Optional[np.ndarray]
    test: Optional[np.ndarray]
    test_labels: Optional[np.ndarray]
    class_names: List[str]
    source: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple:
        """(H, W, C) of every image."""
        return tuple(int(s) for s in self.train.shape[1:])


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------
def load_dataset(cfg: DataConfig, need_test: bool = False, announce: bool = False, test_files=None) -> ImageData:
    """Load ``cfg.dataset`` (or ``cfg.idx_dir``) and carve the validation split.

    Args:
        cfg: data configuration.
        need_test: raise if the dataset has no test split.
        announce: say on stderr how many files of an image folder are skipped (training
            does, once; the other commands read the same folder silently).
        test_files: an image folder's test files as a run recorded them (paths relative to
            the folder; :func:`tfvae.rundir.run_dataset` passes them), so a run is evaluated
            on the images it was trained without even after files were added to the folder.

    Returns:
        :class:`ImageData` with uint8 images.

    Raises:
        TfvaeError: unknown dataset name (with close matches), malformed IDX files,
            validation split larger than the training split.
        DataNotFoundError: the data is neither present nor downloadable.
    """
    source = {}
    if cfg.image_dir:
        from .folder import FileImages, scan_folder

        scan = scan_folder(cfg.image_dir, cfg.image_size, cfg.channels, cfg.test_fraction, cfg.split_seed,
                           say=None if announce else (lambda line: None), max_pixels=cfg.max_image_pixels,
                           test_files=test_files)
        shape = (*scan.image_size, scan.channels)
        train, train_labels = FileImages(scan.train_paths, shape), scan.train_labels
        test, test_labels = FileImages(scan.test_paths, shape), scan.test_labels
        class_names = scan.class_names
        source = {"layout": scan.layout, "fingerprint": scan.fingerprint, "image_size": scan.image_size,
                  "channels": scan.channels, "files": len(scan.train_paths) + len(scan.test_paths),
                  "skipped_files": len(scan.skipped), "skipped_examples": [p for p, _ in scan.skipped[:5]],
                  "test_files": [os.path.relpath(p, cfg.image_dir) for p in scan.test_paths]}
    elif cfg.idx_dir:
        train, train_labels, test, test_labels = load_idx_folder(cfg.idx_dir)
        class_names = [str(i) for i in range(int(train_labels.max()) + 1)] if train_labels is not None else []
    elif cfg.dataset == "dsprites":  # rendered here, with known factors (see tfvae/dsprites.py)
        from . import dsprites

        train, train_labels, test, test_labels, class_names = dsprites.load_splits()
    else:
        train, train_labels, test, test_labels, class_names = _load_tfds(cfg.dataset, cfg.data_dir)
    if need_test and test is None:
        raise TfvaeError(f"dataset {cfg.dataset!r} has no test split")

    if not source:
        train = as_uint8_images(train, cfg.dataset, "train")
        if test is not None:
            test = as_uint8_images(test, cfg.dataset, "test")
    n = len(train)
    size = default_validation_size(n) if cfg.validation_size is None else cfg.validation_size
    if size >= n:
        raise TfvaeError(f"--validation-size {size} must be smaller than the training split ({n} images)"
                         + ("; lower it for a small image folder" if source else ""))
    perm = np.random.default_rng(cfg.split_seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:size]), np.sort(perm[size:])
    if cfg.max_train_examples is not None:
        train_idx = train_idx[: cfg.max_train_examples]

    def take(arr, idx):
        return None if arr is None else arr[idx]

    return ImageData(
        name=cfg.dataset,
        train=train[train_idx],
        train_labels=take(train_labels, train_idx),
        validation=train[val_idx],
        validation_labels=take(train_labels, val_idx),
        test=test,
        test_labels=test_labels,
        class_names=class_names,
        source=source,
    )


def default_validation_size(n_train: int) -> int:
    """``--validation-size``'s default for a training split of ``n_train`` images: the smaller
    of 5,000 and a tenth of it, at least 1 (MNIST's 60,000: 5,000; a folder of 1,200: 120)."""
    return max(1, min(5000, n_train // 10))


def as_uint8_images(images: np.ndarray, dataset: str, split: str) -> np.ndarray:
    """Check images and return them as uint8 [N, H, W, C].

    uint8 images pass unchanged. Float images must be finite and lie in [0, 1]; they are
    scaled by 255 and rounded.

    Raises:
        TfvaeError: naming the dataset, split and first bad image index, for NaN/Inf
            pixels, float values outside [0, 1], or another dtype.
    """
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise TfvaeError(f"dataset {dataset!r}, split {split}: expected uint8 or float images, got {images.dtype}")
    flat = images.reshape(len(images), -1)
    bad = np.flatnonzero(~np.isfinite(flat).all(axis=1))
    if bad.size:
        raise TfvaeError(f"dataset {dataset!r}, split {split}: image {bad[0]} has NaN or Inf pixels "
                         f"({bad.size} such images)")
    bad = np.flatnonzero((flat < 0).any(axis=1) | (flat > 1).any(axis=1))
    if bad.size:
        i = bad[0]
        raise TfvaeError(f"dataset {dataset!r}, split {split}: image {i} has values in "
                         f"[{flat[i].min():g}, {flat[i].max():g}], expected [0, 1] ({bad.size} such images)")
    return np.round(images * 255).astype(np.uint8)


def _load_tfds(name: str, data_dir: Optional[str]):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow_datasets as tfds
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)  # TFDS's warnings about empty folders

    if data_dir is not None and not Path(data_dir).is_dir():
        raise DataNotFoundError(f"--data-dir {data_dir} is not a folder; {_HOW_TO_PROVIDE}")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # tfds raises DatasetNotFoundError and friends
        known = tfds.list_builders()
        if name in known:
            raise DataNotFoundError(f"dataset {name!r} could not be opened ({_one_line(exc)}); {_HOW_TO_PROVIDE}") from None
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see tfds.list_builders() for names"
        raise TfvaeError(f"--dataset: unknown dataset {name!r}{hint}") from None

    image_key = _image_feature(builder, name)
    if not builder.is_prepared():
        where = data_dir or os.environ.get("TFDS_DATA_DIR") or "TFDS's default folder"
        if not _can_reach(_TFDS_HOST):
            # Without this check TFDS retries each file for minutes before giving up.
            raise DataNotFoundError(f"dataset {name!r} is not in {where} and cannot be downloaded "
                                    f"(no connection to {_TFDS_HOST}); {_HOW_TO_PROVIDE}")
        try:
            builder.download_and_prepare()
        except Exception as exc:
            raise DataNotFoundError(
                f"dataset {name!r} is not in {where} and could not be downloaded ({_one_line(exc)}); {_HOW_TO_PROVIDE}"
            ) from None

    def split(split_name):
        if split_name not in builder.info.splits:
            return None, None
        arrays = tfds.as_numpy(builder.as_dataset(split=split_name, batch_size=-1))
        images = np.asarray(arrays[image_key])
        labels = np.asarray(arrays["label"]).astype(np.int64) if "label" in arrays else None
        return images, labels

    train, train_labels = split("train")
    if train is None:
        raise TfvaeError(f"dataset {name!r} has no 'train' split")
    test, test_labels = split("test")
    class_names = []
    if "label" in builder.info.features:
        class_names = list(builder.info.features["label"].names)
    return train, train_labels, test, test_labels, class_names


_TFDS_HOST = "storage.googleapis.com"  # TFDS's download mirror


def _can_reach(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to host:port opens within ``timeout`` seconds."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _image_feature(builder, name: str) -> str:
    features = builder.info.features
    keys = list(features.keys()) if hasattr(features, "keys") else []
    if "image" in keys:
        return "image"
    raise TfvaeError(f"--dataset: {name!r} has no 'image' feature (features: {', '.join(keys)})")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text or type(exc).__name__


# ---- IDX -------------------------------------------------------------------------------
_IDX_FILES = {
    "train_images": ("train-images", 3),
    "train_labels": ("train-labels", 1),
    "test_images": ("t10k-images", 3),
    "test_labels": ("t10k-labels", 1),
}


def _find_idx(folder: Path, stem: str, ndim: int) -> Optional[Path]:
    # Accept train-images-idx3-ubyte, train-images.idx3-ubyte, and either gzipped.
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            p = folder / f"{stem}{sep}idx{ndim}-ubyte{suffix}"
            if p.is_file():
                return p
    return None


def read_idx(path) -> np.ndarray:
    """Read one IDX file (Y. LeCun's MNIST format), gzipped or raw.

    Returns:
        uint8 array with the file's dimensions ([N, H, W] for images, [N] for labels).

    Raises:
        TfvaeError: the file is unreadable, has a bad magic number, or its size does
            not match its header.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise TfvaeError(f"--idx-dir: cannot read {path} ({_one_line(exc)})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise TfvaeError(f"--idx-dir: {path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise TfvaeError(f"--idx-dir: {path} has a truncated header")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    expected = math.prod(dims)  # Python integers: a header whose product overflows int64 is still compared exactly
    if len(raw) - header != expected:
        raise TfvaeError(
            f"--idx-dir: {path} holds {len(raw) - header} bytes of data, its header {list(dims)} says {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_idx_folder(folder):
    """Load the four MNIST-format files from ``folder``.

    Returns:
        (train_images [N,H,W,1] uint8, train_labels [N] int64, test_images, test_labels);
        the test pair is (None, None) when both t10k files are absent.

    Raises:
        TfvaeError: the folder or a training file is missing, a file is malformed, images
            and labels disagree in count, or the test images' size differs from the training
            images' (checked here, before any training).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TfvaeError(f"--idx-dir: {folder} is not a folder")
    paths = {key: _find_idx(folder, stem, nd) for key, (stem, nd) in _IDX_FILES.items()}
    for key in ("train_images", "train_labels"):
        if paths[key] is None:
            stem, nd = _IDX_FILES[key]
            raise TfvaeError(f"--idx-dir: {folder} has no {stem}-idx{nd}-ubyte[.gz]")
    if (paths["test_images"] is None) != (paths["test_labels"] is None):
        raise TfvaeError(f"--idx-dir: {folder} has only one of t10k-images / t10k-labels")

    def pair(img_key, lab_key):
        if paths[img_key] is None:
            return None, None
        images, labels = read_idx(paths[img_key]), read_idx(paths[lab_key])
        if images.ndim != 3:
            raise TfvaeError(f"--idx-dir: {paths[img_key]} should hold [N, H, W] images, has shape {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise TfvaeError(
                f"--idx-dir: {paths[lab_key]} has {labels.shape} labels for {len(images)} images in {paths[img_key].name}"
            )
        return images[..., None], labels.astype(np.int64)

    train, train_labels = pair("train_images", "train_labels")
    test, test_labels = pair("test_images", "test_labels")
    if test is not None and test.shape[1:] != train.shape[1:]:
        raise TfvaeError(f"--idx-dir: {paths['test_images'].name} holds {test.shape[1]}×{test.shape[2]} images, "
                         f"{paths['train_images'].name} {train.shape[1]}×{train.shape[2]}; both splits need one size")
    return train, train_labels, test, test_labels


# ---------------------------------------------------------------------------------------
# Binarization and pipelines
# ---------------------------------------------------------------------------------------
def binarize_fixed(images: np.ndarray, mode: str, seed: int) -> np.ndarray:
    """Binarize held-out images once, reproducibly.

    Args:
        images: uint8 [N, H, W, C].
        mode: ``dynamic`` (one Bernoulli draw per pixel with ``numpy.random.default_rng(seed)``),
            ``static`` (grey level > 0.5) or ``none``.

    Returns:
        float32 [N, H, W, C] in [0, 1].
    """
    x = images.astype(np.float32) / 255.0
    if mode == "dynamic":
        return (np.random.default_rng(seed).random(x.shape, dtype=np.float32) < x).astype(np.float32)
    if mode == "static":
        return (x > 0.5).astype(np.float32)
    if mode == "none":
        return x
    raise ValueError(f"unknown binarization {mode!r}")


def train_pipeline(images: np.ndarray, batch_size: int, mode: str, seed: int, noise_shape=None,
                   start_epoch: int = 0, labels=None, num_classes: int = 0, split=None):
    """Endless ``tf.data`` pipeline over training images: shuffle, binarize, batch, prefetch.
    Pass ``steps_per_epoch = ceil(N / batch_size)`` to ``fit``.

    Every random choice is stateless, keyed by the seed, and drawn for a whole batch in one
    op: epoch e visits the images in the order ``stateless_shuffle(range(N), seed=(seed, e))``,
    and the batch that starts at position p of that order (p = step · batch_size) draws its
    binarization uniforms u [b, H, W, C] and its noise eps [b, S, D] from the two halves of
    ``stateless_split((seed, e·N + p))``; image j of the batch is binarized as u[j] < x and
    gets eps[j]. So every epoch is one pass in a new order with new binary images, the run
    is reproducible from ``seed``, a run resumed at ``start_epoch`` sees exactly what the
    uninterrupted run saw, and several workers (``split``) or replicas, which each take rows
    of the same global batch, see exactly the rows one device would.

    Args:
        images: uint8 [N, H, W, C], or :class:`tfvae.folder.FileImages`, whose files are
            read and decoded inside the pipeline (parallel, in order), never all held.
        batch_size: global batch size b (images per optimizer step).
        mode: ``dynamic`` (u < x), ``static`` (x > 0.5) or ``none`` (grey levels).
        noise_shape: (S, D) to also yield standard-normal noise eps [B, S, D] for the
            reparameterized samples, drawn here (outside the model) so that every image's
            noise is independent of how a batch is split across devices.
        start_epoch: first epoch of the stream (for resuming).
        labels, num_classes: int labels [N] to also yield one-hot labels float32 [B, C]
            (conditional models; needs ``noise_shape``).
        split: for several workers (``tfvae.training.multiworker.distribute``), a function turning
            a dataset of global batches (image indices with their draws) into this worker's
            per-replica parts; the pipeline then yields those parts, and reads only their images.

    Returns:
        Endless ``tf.data.Dataset`` of float32 batches x [B, H, W, C] in [0, 1], (x, eps)
        or (x, eps, labels); an epoch's last batch is smaller when B does not divide N.
    """
    import tensorflow as tf

    n = len(images)
    from .folder import FileImages, decode_fn

    image_shape = tuple(int(d) for d in (images.image_shape if isinstance(images, FileImages) else images.shape[1:]))
    if isinstance(images, FileImages):  # streamed: only the file list is in memory
        files = tf.constant(images.paths)
        decode = decode_fn(*images.image_shape)

        def read(index):  # [b] -> uint8 [b, H, W, C], the files of a batch decoded in parallel
            return tf.map_fn(lambda i: decode(tf.gather(files, i)), index, fn_output_signature=tf.uint8,
                             parallel_iterations=16)
    else:
        pixels = tf.constant(images)
        read = lambda index: tf.gather(pixels, index)  # noqa: E731
    seed64 = tf.constant(seed, tf.int64)
    onehot = None if labels is None else tf.one_hot(tf.constant(labels, tf.int64), num_classes)

    def draws(epoch, step, index):  # one global batch: its indices and the draws of all its rows
        b = tf.shape(index)[0]
        key = tf.stack([seed64, epoch * n + step * batch_size])
        binarize_seed, noise_seed = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        out = (index,)
        if mode == "dynamic":
            out += (tf.random.stateless_uniform(tf.concat([[b], image_shape], 0), seed=binarize_seed),)
        if noise_shape is not None:
            out += (tf.random.stateless_normal(tf.concat([[b], noise_shape], 0), seed=noise_seed),)
        return out

    def finish(index, *drawn):  # a (part of a) batch: read its pixels, binarize, attach noise and labels
        x = tf.cast(read(index), tf.float32) / 255.0
        if mode == "dynamic":
            u, drawn = drawn[0], drawn[1:]
            x = tf.cast(u < x, tf.float32)
        elif mode == "static":
            x = tf.cast(x > 0.5, tf.float32)
        if noise_shape is None:
            return x
        if onehot is None:
            return x, drawn[0]
        return x, drawn[0], tf.gather(onehot, index)

    def one_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed64, epoch]))
        ds = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).enumerate().map(
            lambda step, index: draws(epoch, step, index))
        if split is not None:  # this replica's rows of each global batch, split before any pixel is read
            ds = split(ds)
        return ds.map(lambda *e: finish(*e), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return tf.data.Dataset.counter(start=start_epoch).flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def heldout_pipeline(images: np.ndarray, batch_size: int, mode: str, seed: int, labels=None, num_classes: int = 0,
                     noise_shape=None, noise_seed: int = 0):
    """Batches of held-out images binarized once (see :func:`binarize_fixed`), in order.

    Args:
        noise_shape: (S, D) to also yield standard-normal noise eps [B, S, D] for the
            validation samples of z, keyed by image: image i's noise comes from the
            stateless seed (noise_seed, −1 − i) (training keys are ≥ 0), so a validation
            figure does not depend on how batches are split over replicas or workers.

    Returns:
        ``tf.data.Dataset`` of float32 batches [B, H, W, C], or tuples with eps
        [B, S, D] and/or one-hot labels [B, C] (the order of :func:`train_pipeline`).
    """
    import tensorflow as tf

    x = binarize_fixed(images, mode, seed)
    elements = [tf.data.Dataset.from_tensor_slices(x)]
    if noise_shape is not None:
        key = tf.constant(noise_seed, tf.int64)
        elements.append(tf.data.Dataset.range(len(x)).map(
            lambda i: tf.random.stateless_normal(noise_shape, seed=tf.stack([key, -1 - i]))))
    if labels is not None:
        elements.append(tf.data.Dataset.from_tensor_slices(np.eye(num_classes, dtype=np.float32)[labels]))
    ds = elements[0] if len(elements) == 1 else tf.data.Dataset.zip(tuple(elements))
    return ds.batch(batch_size).cache().prefetch(tf.data.AUTOTUNE)

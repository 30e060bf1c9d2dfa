"""A folder of image files as a dataset, streamed from disk.

Layout (the conventions of ``keras.utils.image_dataset_from_directory``):

* ``DIR/<class>/...`` : each sub-folder is a class (labels 0, 1, ... in sorted name
  order; files in nested folders belong to their top sub-folder); files directly in
  ``DIR`` are unlabelled. A folder holding both is refused (which is meant?).
* ``DIR/train/`` and ``DIR/test/``: when both exist they are the splits, each laid out
  as above (the test split's classes must be among the training split's). Otherwise a
  seeded, per-class ``test_fraction`` of the files is held out for testing.

Files ending in .png, .jpg, .jpeg, .bmp or .gif (any case; a GIF's first frame) are
read; other files and names starting with "." are ignored. When a run starts, every file
is decoded once with TensorFlow's decoders (the ones training uses): files that do not
decode (not an image, truncated) are **skipped and counted** (``meta.skipped_files`` in
config.json, and one line on stderr), because one bad file in a large folder should not
stop a user; a folder with no decodable file is an error. Only the file list is kept in
memory: :class:`FileImages` decodes pixels when they are used, and the training
pipeline reads files inside ``tf.data`` (:func:`decode_fn`).

Pixels: uint8, channels 1 or 3 (an alpha channel is dropped; grey becomes RGB or RGB
becomes grey, ITU-R 601 weights, when ``channels`` asks); an image of another size is
resized keeping its aspect ratio (bilinear, antialiased) so that it covers H×W, then
centre-cropped to H×W.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from .errors import TfvaeError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def parse_image_size(text) -> Optional[list]:
    """``"H,W"`` (or ``"N"`` for N×N) -> [H, W]; None stays None.

    Raises:
        TfvaeError: not one or two positive integers up to 4096.
    """
    if text is None:
        return None
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    try:
        size = [int(p) for p in parts]
    except (TypeError, ValueError):
        size = []
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or not all(0 < s <= 4096 for s in size):
        raise TfvaeError(f"--image-size must be H,W (two positive integers up to 4096, e.g. 32,32), got {text!r}")
    return size


def _image_files(folder: Path) -> List[Path]:
    """Image files under ``folder`` (recursively), sorted; hidden names skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS):
                found.append(Path(root) / name)
    return found


def _read_split(folder: Path, option: str):
    """(paths, labels or None, class names) of one split folder."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise TfvaeError(f"{option}: cannot read {folder} ({exc.strerror})") from None
    subdirs = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    loose = [Path(e.path) for e in entries if e.is_file() and not e.name.startswith(".")
             and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    classes = [d for d in subdirs if _image_files(d)]
    if classes and loose:
        raise TfvaeError(f"{option}: {folder} has both class sub-folders ({classes[0].name}, ...) and image files "
                         f"directly in it ({loose[0].name}, ...); put every image in a class folder, or none")
    if not classes:
        return loose, None, []
    paths, labels = [], []
    for label, d in enumerate(classes):
        files = _image_files(d)
        paths += files
        labels += [label] * len(files)
    return paths, np.asarray(labels, np.int64), [d.name for d in classes]


@dataclass
class FolderScan:
    """What :func:`scan_folder` found.

    Attributes:
        train_paths, test_paths: decodable files of each split (str).
        train_labels, test_labels: int64 [N] or None (unlabelled folder).
        class_names: one per label.
        image_size: [H, W] used; channels: 1 or 3.
        skipped: files that did not decode, as (path, reason).
        fingerprint: :func:`folder_fingerprint` of all kept files (paths, sizes and
            modification times: a file added, removed or rewritten changes it).
        layout: ``train/test folders`` or ``held-out fraction``.
    """

    train_paths: List[str]
    train_labels: Optional[np.ndarray]
    test_paths: List[str]
    test_labels: Optional[np.ndarray]
    class_names: List[str]
    image_size: List[int]
    channels: int
    skipped: list
    fingerprint: str
    layout: str


def header_pixels(path) -> int:
    """H·W as the file's header declares it, read with Pillow without decoding any pixel
    (0 when Pillow cannot read the header; TensorFlow's decoder then decides)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            w, h = img.size
        return int(w) * int(h)
    except Image.DecompressionBombError as exc:  # Pillow's own limit (over 2·89 M pixels): read the size it names
        import re

        found = re.search(r"\((\d+) pixels\)", str(exc))
        return int(found.group(1)) if found else 1 << 62
    except Exception:  # noqa: BLE001 (any unreadable header: TensorFlow's decoder judges the file)
        return 0


def probe_shapes(paths: List[str]) -> np.ndarray:
    """Decode every file once with TensorFlow and return int64 [N, 3] (height, width,
    native channels), a row of -1 for a file that does not decode.

    The files are decoded in parallel inside ``tf.data``; failures are dropped with
    ``Dataset.ignore_errors`` and recognized by their missing index."""
    import tensorflow as tf

    shapes = np.full((len(paths), 3), -1, np.int64)
    if not paths:
        return shapes
    files = tf.constant([str(p) for p in paths])

    def probe(i):
        img = tf.io.decode_image(tf.io.read_file(files[i]), channels=0, expand_animations=False)
        return i, tf.cast(tf.shape(img), tf.int64)

    ds = tf.data.Dataset.range(len(paths)).map(probe, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for idx, shp in ds.ignore_errors().batch(4096).as_numpy_iterator():
        shapes[idx] = shp
    return shapes


def scan_folder(folder, image_size=None, channels=None, test_fraction: float = 0.1, split_seed: int = 0,
                option: str = "--image-dir", say=None, max_pixels: int = 50_000_000, test_files=None) -> FolderScan:
    """List, check and split an image folder (see the module docstring).

    Args:
        folder: the folder.
        image_size: [H, W], or None for the most common size among the training files.
        channels: 1 or 3, or None for the files' own (which must then agree).
        test_fraction: share of each class held out for testing when the folder has no
            ``train/`` and ``test/`` sub-folders (at least one file per class).
        split_seed: seed of that held-out choice (numpy ``default_rng``).
        say: where the skipped-files line goes (default: stderr).
        max_pixels: files whose header declares more than this many pixels (H·W) are skipped
            and counted before any decoding (:func:`header_pixels`): a decompression bomb
            costs a header read, never its decoded size in memory.
        test_files: the test split as a run recorded it (paths relative to ``folder``): these
            files are the test split and every other kept file is training data, whatever
            the held-out choice would now pick (files added since the run started never
            enter its test split, and no test file becomes a training file).

    Raises:
        TfvaeError: naming the folder, file or option: not a folder; no image files; no
            file decodes; mixed channel counts without ``channels``; a class with too few
            files for the split; test classes missing from train; a bad ``test_fraction``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise TfvaeError(f"{option}: {folder} is not a folder")
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise TfvaeError(f"--test-fraction must be in (0, 1), got {test_fraction!r}")
    if channels not in (None, 1, 3):
        raise TfvaeError(f"--channels must be 1 or 3, got {channels!r}")
    size = parse_image_size(image_size)
    split_dirs = (folder / "train").is_dir() and (folder / "test").is_dir()
    if split_dirs:
        train_paths, train_labels, names = _read_split(folder / "train", option)
        test_paths, test_labels, test_names = _read_split(folder / "test", option)
        if (train_labels is None) != (test_labels is None):
            raise TfvaeError(f"{option}: {folder}/train and {folder}/test must both have class sub-folders, or neither")
        if train_labels is not None:
            extra = [n for n in test_names if n not in names]
            if extra:
                raise TfvaeError(f"{option}: {folder}/test has class folder {extra[0]!r}, which {folder}/train lacks")
            remap = np.asarray([names.index(n) for n in test_names], np.int64)
            test_labels = remap[test_labels]
    else:
        train_paths, train_labels, names = _read_split(folder, option)
        test_paths, test_labels = [], None
    all_paths = list(train_paths) + list(test_paths)
    if not all_paths:
        raise TfvaeError(f"{option}: {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")

    declared = np.asarray([header_pixels(p) for p in all_paths], np.int64)
    small = declared <= max_pixels
    shapes = np.full((len(all_paths), 3), -1, np.int64)
    shapes[small] = probe_shapes([p for p, k in zip(all_paths, small) if k])
    ok = shapes[:, 0] > 0
    skipped = [(str(p), "does not decode as an image (not an image, or truncated)" if k else
                f"declares {n} pixels, over --max-image-pixels {max_pixels}")
               for p, good, k, n in zip(all_paths, ok, small, declared) if not good]
    if not ok.any():
        raise TfvaeError(f"{option}: none of the {len(all_paths)} image files in {folder} decodes "
                         f"(first: {skipped[0][0]}: {skipped[0][1]})")
    if skipped:
        (say or (lambda s: print(s, file=sys.stderr)))(
            f"{option}: skipping {len(skipped)} of {len(all_paths)} files that do not decode or are too large "
            f"(first: {skipped[0][0]}: {skipped[0][1]}); the run's config.json records the count (meta.image_folder)")
    n_train = len(train_paths)
    keep_train, keep_test = ok[:n_train], ok[n_train:]
    train_shapes = shapes[:n_train][keep_train]
    train_paths = [str(p) for p, k in zip(train_paths, keep_train) if k]
    test_paths = [str(p) for p, k in zip(test_paths, keep_test) if k]
    if train_labels is not None:
        train_labels = train_labels[keep_train]
    if test_labels is not None:
        test_labels = test_labels[keep_test]
    if not train_paths:
        raise TfvaeError(f"{option}: no file of {folder / 'train'} decodes")

    native = np.where(shapes[ok][:, 2] >= 3, 3, 1)
    if channels is None:
        kinds = Counter(native.tolist())
        if len(kinds) > 1:
            raise TfvaeError(f"{option}: {folder} mixes grey ({kinds[1]} files) and colour ({kinds[3]} files) "
                             f"images; pass --channels 1 or --channels 3")
        channels = int(native[0])
    if size is None:
        counts = Counter(map(tuple, train_shapes[:, :2].tolist()))
        size = list(max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0])

    layout = "train/test folders"
    if test_files is not None:
        layout = "train/test folders" if split_dirs else "held-out fraction"
        train_paths, train_labels, test_paths, test_labels = _recorded_split(
            train_paths, train_labels, test_paths, test_labels, test_files, folder, option)
    elif not split_dirs:
        layout = "held-out fraction"
        train_paths, train_labels, test_paths, test_labels = _hold_out(
            train_paths, train_labels, names, test_fraction, split_seed, folder, option)
    fingerprint = folder_fingerprint(folder, train_paths + test_paths)
    return FolderScan(train_paths, train_labels, test_paths, test_labels, names, [int(s) for s in size],
                      int(channels), skipped, fingerprint, layout)


def folder_fingerprint(folder, paths) -> str:
    """SHA-256 over the kept files' relative paths, sizes and modification times (ns): a file
    added, removed, renamed or rewritten (new pixels) changes it."""
    lines = []
    for p in sorted(paths, key=lambda p: os.path.relpath(p, folder)):
        st = os.stat(p)
        lines.append(f"{os.path.relpath(p, folder)}\t{st.st_size}\t{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _recorded_split(train_paths, train_labels, test_paths, test_labels, test_files, folder, option):
    """Split the kept files as the run recorded: ``test_files`` (relative) are the test split."""
    paths = list(train_paths) + list(test_paths)
    labels = None if train_labels is None else np.concatenate(
        [train_labels, np.zeros(0, np.int64) if test_labels is None else test_labels])
    where = {os.path.relpath(p, folder): i for i, p in enumerate(paths)}
    missing = [f for f in test_files if f not in where]
    if missing:
        raise TfvaeError(f"{option}: {folder} no longer holds {len(missing)} of the run's {len(test_files)} test "
                         f"files (first: {missing[0]}); the run's test split cannot be rebuilt")
    is_test = np.zeros(len(paths), bool)
    is_test[[where[f] for f in test_files]] = True
    take = lambda mask: [p for p, m in zip(paths, mask) if m]  # noqa: E731
    return (take(~is_test), None if labels is None else labels[~is_test],
            take(is_test), None if labels is None else labels[is_test])


def _hold_out(paths, labels, names, fraction, seed, folder, option):
    """Per class, a seeded max(1, round(n·fraction)) files go to test; at least one stays in train."""
    groups = [np.arange(len(paths))] if labels is None else [np.flatnonzero(labels == c) for c in range(len(names))]
    rng = np.random.default_rng(seed)
    test_idx = []
    for c, idx in enumerate(groups):
        n_test = max(1, int(round(len(idx) * fraction)))
        if len(idx) - n_test < 1:
            where = f"class folder {names[c]!r}" if labels is not None else str(folder)
            raise TfvaeError(f"{option}: {where} has {len(idx)} decodable image(s); holding out --test-fraction "
                             f"{fraction:g} needs at least 2 (one to test, one to train)")
        test_idx.append(rng.permutation(idx)[:n_test])
    test_mask = np.zeros(len(paths), bool)
    test_mask[np.concatenate(test_idx)] = True
    take = lambda mask: [p for p, m in zip(paths, mask) if m]  # noqa: E731
    return (take(~test_mask), None if labels is None else labels[~test_mask],
            take(test_mask), None if labels is None else labels[test_mask])


def decode_fn(height: int, width: int, channels: int):
    """A TensorFlow function: file path (string scalar) -> uint8 [height, width, channels].

    Decodes PNG, JPEG, BMP or GIF (first frame), drops alpha, converts grey/colour to
    ``channels``, and resizes keeping the aspect ratio + centre-crops when the size
    differs (an image already H×W passes unchanged, bit for bit)."""
    import tensorflow as tf

    def decode(path):
        img = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)
        grey = tf.shape(img)[-1] < 3
        if channels == 1:
            img = tf.cond(grey, lambda: img[..., :1], lambda: tf.image.rgb_to_grayscale(img[..., :3]))
        else:
            img = tf.cond(grey, lambda: tf.image.grayscale_to_rgb(img[..., :1]), lambda: img[..., :3])
        h, w = tf.shape(img)[0], tf.shape(img)[1]

        def resize():
            scale = tf.maximum(height / tf.cast(h, tf.float64), width / tf.cast(w, tf.float64))
            nh = tf.maximum(height, tf.cast(tf.round(tf.cast(h, tf.float64) * scale), tf.int32))
            nw = tf.maximum(width, tf.cast(tf.round(tf.cast(w, tf.float64) * scale), tf.int32))
            big = tf.image.resize(tf.cast(img, tf.float32), tf.stack([nh, nw]), antialias=True)
            top, left = (nh - height) // 2, (nw - width) // 2
            crop = big[top:top + height, left:left + width]
            return tf.cast(tf.clip_by_value(tf.round(crop), 0, 255), tf.uint8)

        img = tf.cond(tf.logical_and(tf.equal(h, height), tf.equal(w, width)), lambda: img, resize)
        return tf.ensure_shape(img, [height, width, channels])

    return decode


class FileImages:
    """Images in files, looking like a uint8 array [N, H, W, C] whose pixels are decoded
    only when used: ``len``, ``shape``, ``dtype``; indexing with a slice or an index
    array gives another :class:`FileImages`; an integer index, ``np.asarray`` and
    ``astype`` decode (in parallel, with :func:`decode_fn`).

    Args:
        paths: file paths (str), one per image.
        shape: (H, W, C) every image is brought to.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, shape):
        self.paths = list(paths)
        self.image_shape = tuple(int(s) for s in shape)

    def __len__(self):
        return len(self.paths)

    @property
    def shape(self):
        return (len(self.paths),) + self.image_shape

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            return self.decode([self.paths[index]])[0]
        if isinstance(index, slice):
            return FileImages(self.paths[index], self.image_shape)
        idx = np.asarray(index)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        return FileImages([self.paths[i] for i in idx.tolist()], self.image_shape)

    def decode(self, paths=None) -> np.ndarray:
        """uint8 [N, H, W, C] of ``paths`` (default: all of this object's files)."""
        import tensorflow as tf

        paths = self.paths if paths is None else paths
        h, w, c = self.image_shape
        out = np.empty((len(paths), h, w, c), np.uint8)
        if not paths:
            return out
        ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths)).map(
            decode_fn(h, w, c), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(1024)
        start = 0
        for batch in ds.as_numpy_iterator():
            out[start:start + len(batch)] = batch
            start += len(batch)
        return out

    def __array__(self, dtype=None, copy=None):
        arr = self.decode()
        return arr if dtype is None else arr.astype(dtype)

    def astype(self, dtype):
        return self.decode().astype(dtype)

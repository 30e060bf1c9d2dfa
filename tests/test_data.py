"""Data: IDX parsing, binarization, splits, the tf.data pipeline, and the real datasets."""

import gzip
import struct

import numpy as np
import pytest

from tfvae.config import DataConfig
from tfvae.data import binarize_fixed, load_dataset, load_idx_folder, read_idx, train_pipeline
from tfvae.errors import TfvaeError


def write_idx(path, array, gz=False):
    array = np.asarray(array, dtype=np.uint8)
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def make_idx_folder(folder, n_train=40, n_test=10, gz=True, sep="-"):
    rng = np.random.default_rng(0)
    folder.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    for stem, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{stem}-images{sep}idx3-ubyte{ext}", rng.integers(0, 256, (n, 6, 5)), gz)
        write_idx(folder / f"{stem}-labels{sep}idx1-ubyte{ext}", np.arange(n) % 3, gz)
    return folder


@pytest.mark.parametrize("gz,sep", [(True, "-"), (False, "-"), (False, ".")])
def test_idx_folder_loads_gzipped_or_raw(tmp_path, gz, sep):
    train, train_labels, test, test_labels = load_idx_folder(make_idx_folder(tmp_path / "idx", gz=gz, sep=sep))
    assert train.shape == (40, 6, 5, 1) and train.dtype == np.uint8
    assert test.shape == (10, 6, 5, 1)
    assert train_labels.tolist()[:4] == [0, 1, 2, 0]


def test_load_dataset_carves_a_disjoint_validation_split(tmp_path):
    folder = make_idx_folder(tmp_path / "idx")
    data = load_dataset(DataConfig(dataset="toy", idx_dir=str(folder), validation_size=10))
    assert len(data.train) == 30 and len(data.validation) == 10 and len(data.test) == 10
    all_train = read_idx(folder / "train-images-idx3-ubyte.gz")
    rows = {r.tobytes() for r in all_train}
    seen = [r.tobytes() for r in np.concatenate([data.train, data.validation])[..., 0]]
    assert sorted(seen) == sorted(r.tobytes() for r in all_train) and len(rows) == 40
    again = load_dataset(DataConfig(dataset="toy", idx_dir=str(folder), validation_size=10))
    np.testing.assert_array_equal(again.validation, data.validation)  # split is seeded
    sliced = load_dataset(DataConfig(dataset="toy", idx_dir=str(folder), validation_size=10, max_train_examples=7))
    assert len(sliced.train) == 7


def test_malformed_idx_files_name_the_file(tmp_path):
    folder = make_idx_folder(tmp_path / "idx", gz=False)
    bad = folder / "train-images-idx3-ubyte"
    bad.write_bytes(bad.read_bytes()[:-7])  # truncated data
    with pytest.raises(TfvaeError, match="train-images-idx3-ubyte holds"):
        load_idx_folder(folder)
    bad.write_bytes(b"\x01\x02\x03\x04rubbish")
    with pytest.raises(TfvaeError, match="bad magic"):
        load_idx_folder(folder)
    write_idx(bad, np.zeros((41, 6, 5)))  # 41 images for 40 labels
    with pytest.raises(TfvaeError, match="labels for 41 images"):
        load_idx_folder(folder)
    (folder / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(TfvaeError, match="no train-labels"):
        load_idx_folder(folder)
    with pytest.raises(TfvaeError, match="not a folder"):
        load_idx_folder(tmp_path / "missing")


def test_binarization_modes():
    images = np.array([0, 64, 127, 128, 200, 255], dtype=np.uint8).reshape(1, 2, 3, 1)
    np.testing.assert_allclose(binarize_fixed(images, "none", 0).ravel(), images.ravel() / 255.0)
    assert binarize_fixed(images, "static", 0).ravel().tolist() == [0, 0, 0, 1, 1, 1]
    grey = np.full((2000, 4, 4, 1), 64, dtype=np.uint8)
    draw = binarize_fixed(grey, "dynamic", 5)
    assert set(np.unique(draw)) == {0.0, 1.0}
    assert abs(draw.mean() - 64 / 255) < 0.01
    np.testing.assert_array_equal(draw, binarize_fixed(grey, "dynamic", 5))  # held-out draw is fixed


def test_dynamic_binarization_draws_afresh_each_epoch_and_is_seeded():
    images = np.full((64, 4, 4, 1), 128, dtype=np.uint8)

    def epochs(seed):  # one batch per epoch
        return [b.numpy() for b in train_pipeline(images, 64, "dynamic", seed).take(2)]

    first, second = epochs(1)
    assert set(np.unique(first)) == {0.0, 1.0}
    assert not np.array_equal(first, second)  # a fresh draw per epoch
    again = epochs(1)
    np.testing.assert_array_equal(first, again[0])  # reproducible from the seed
    np.testing.assert_array_equal(second, again[1])


# ---- real data -------------------------------------------------------------------------
OFFICIAL_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_tfds_mnist_loads_offline(tfds_dir):
    data = load_dataset(DataConfig(dataset="mnist"))
    assert data.image_shape == (28, 28, 1)
    assert (len(data.train), len(data.validation), len(data.test)) == (55000, 5000, 10000)
    counts = np.bincount(np.concatenate([data.train_labels, data.validation_labels]), minlength=10)
    assert counts.tolist() == OFFICIAL_TRAIN_COUNTS
    assert data.class_names[:3] == ["0", "1", "2"]


def test_mnist_idx_folder_matches_tfds_mnist(tfds_dir, mnist_idx_dir):
    idx = load_dataset(DataConfig(dataset="mnist", idx_dir=str(mnist_idx_dir), validation_size=0))
    assert idx.train.shape == (60000, 28, 28, 1) and idx.test.shape == (10000, 28, 28, 1)
    assert np.bincount(idx.train_labels).tolist() == OFFICIAL_TRAIN_COUNTS
    tf_data = load_dataset(DataConfig(dataset="mnist", validation_size=0))
    # Same images, possibly in another order: compare the sorted per-image pixel sums.
    np.testing.assert_array_equal(np.sort(idx.test.reshape(10000, -1).sum(1)),
                                  np.sort(tf_data.test.reshape(10000, -1).sum(1)))


def test_corrupt_float_images_are_rejected_with_their_index():
    from tfvae.data import as_uint8_images

    images = np.random.default_rng(0).random((20, 4, 4, 1)).astype(np.float32)
    np.testing.assert_array_equal(as_uint8_images(images, "toy", "train"), np.round(images * 255).astype(np.uint8))
    broken = images.copy()
    broken[7, 1, 2, 0] = np.nan
    with pytest.raises(TfvaeError, match=r"dataset 'toy', split train: image 7 has NaN"):
        as_uint8_images(broken, "toy", "train")
    broken = images.copy()
    broken[12] *= 3
    with pytest.raises(TfvaeError, match=r"image 12 has values in \[.*\], expected \[0, 1\]"):
        as_uint8_images(broken, "toy", "test")


def test_training_draws_are_one_op_per_batch_keyed_by_seed_epoch_and_position():
    """The keys of issue 28's pipeline, by hand: the batch at position p of epoch e's order
    draws u [b, H, W, C] and eps [b, S, D] from stateless_split((seed, e·N + p)); resuming at
    epoch 1 replays epoch 1, and two workers' halves of each global batch are its rows."""
    import tensorflow as tf

    n, b, seed = 10, 4, 7
    images = np.random.default_rng(0).integers(0, 256, (n, 3, 2, 1), dtype=np.uint8)
    stream = [tuple(t.numpy() for t in e) for e in train_pipeline(images, b, "dynamic", seed, noise_shape=(2, 3)).take(6)]
    assert [len(x) for x, _ in stream] == [4, 4, 2, 4, 4, 2]  # epochs of 10 = 4 + 4 + 2
    for step, (x, eps) in enumerate(stream):
        epoch, p = divmod(step, 3)
        p *= b
        order = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=[seed, epoch]).numpy()[p:p + b]
        keys = tf.random.experimental.stateless_split(tf.constant([seed, epoch * n + p], tf.int64), 2)
        u = tf.random.stateless_uniform((len(order), 3, 2, 1), seed=keys[0]).numpy()
        np.testing.assert_array_equal(x, (u < images[order] / np.float32(255)).astype(np.float32))
        np.testing.assert_array_equal(eps, tf.random.stateless_normal((len(order), 2, 3), seed=keys[1]).numpy())
    resumed = [tuple(t.numpy() for t in e) for e in
               train_pipeline(images, b, "dynamic", seed, noise_shape=(2, 3), start_epoch=1).take(3)]
    for (x, eps), (x1, eps1) in zip(stream[3:], resumed):
        np.testing.assert_array_equal(x, x1)
        np.testing.assert_array_equal(eps, eps1)

    def halves(worker):  # multiworker.distribute's split for worker `worker` of 2 (one replica each)
        def split(ds):
            return ds.map(lambda *batch: tuple(t[(tf.shape(t, tf.int64)[0] * worker) // 2:
                                                 (tf.shape(t, tf.int64)[0] * (worker + 1)) // 2] for t in batch))
        return split
    parts = [[tuple(t.numpy() for t in e) for e in train_pipeline(images, b, "dynamic", seed, noise_shape=(2, 3),
                                                                  split=halves(w)).take(6)] for w in (0, 1)]
    for (x, eps), first, second in zip(stream, *parts):
        np.testing.assert_array_equal(x, np.concatenate([first[0], second[0]]))
        np.testing.assert_array_equal(eps, np.concatenate([first[1], second[1]]))

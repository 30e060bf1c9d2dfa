"""Image folders (``--image-dir``): layout, decoding, splits, streaming, bad input; the
discretized logistic likelihood and bits/dim; colour runs end to end."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from tfvae.config import DataConfig
from tfvae.data import load_dataset, train_pipeline
from tfvae.errors import TfvaeError
from tfvae.folder import FileImages, parse_image_size, scan_folder


def save(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)
    img.save(path, format=fmt)


def grey_folder(root, classes=("a", "b"), per_class=6, size=(8, 6), seed=0):
    rng = np.random.default_rng(seed)
    images = {}
    for c in classes:
        for i in range(per_class):
            arr = rng.integers(0, 256, (*size, 1), dtype=np.uint8)
            save(root / c / f"{i:03d}.png", arr)
            images[(c, i)] = arr
    return images


# ---- layout and splits ------------------------------------------------------------------
def test_class_folders_give_labels_and_a_seeded_stratified_test_split(tmp_path):
    images = grey_folder(tmp_path / "d", per_class=10)
    scan = scan_folder(tmp_path / "d", test_fraction=0.2, split_seed=3)
    assert scan.class_names == ["a", "b"] and scan.channels == 1 and scan.image_size == [8, 6]
    assert len(scan.test_paths) == 4 and np.bincount(scan.test_labels).tolist() == [2, 2]
    assert sorted(scan.train_paths + scan.test_paths) == sorted(str(tmp_path / "d" / c / f"{i:03d}.png")
                                                              for c, i in images)
    assert scan_folder(tmp_path / "d", test_fraction=0.2, split_seed=3).test_paths == scan.test_paths
    assert scan_folder(tmp_path / "d", test_fraction=0.2, split_seed=4).test_paths != scan.test_paths
    data = load_dataset(DataConfig(image_dir=str(tmp_path / "d"), validation_size=3, test_fraction=0.2))
    assert isinstance(data.train, FileImages) and len(data.train) + len(data.validation) == 16
    for path, label, pixels in zip(data.test.paths, data.test_labels, np.asarray(data.test)):
        c, i = path.split("/")[-2], int(path.split("/")[-1][:3])
        assert label == "ab".index(c)
        np.testing.assert_array_equal(pixels, images[(c, i)])


def test_train_and_test_folders_are_the_splits_and_loose_files_are_unlabelled(tmp_path):
    grey_folder(tmp_path / "s" / "train", classes=("x", "y"))
    grey_folder(tmp_path / "s" / "test", classes=("y",), per_class=2)
    scan = scan_folder(tmp_path / "s")
    assert scan.layout == "train/test folders" and len(scan.train_paths) == 12
    assert scan.test_labels.tolist() == [1, 1]  # "y" is class 1 of the training split
    loose = tmp_path / "loose"
    for i in range(5):
        save(loose / f"{i}.png", np.full((4, 4, 1), i, np.uint8))
    scan = scan_folder(loose, test_fraction=0.2)
    assert scan.train_labels is None and scan.class_names == [] and len(scan.test_paths) == 1


def test_every_format_decodes_to_the_same_pixels_and_gif_gives_its_first_frame(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for fmt in ("png", "bmp"):
        save(tmp_path / f"im.{fmt}", rgb)
        np.testing.assert_array_equal(FileImages([str(tmp_path / f"im.{fmt}")], (5, 7, 3))[0], rgb)
    save(tmp_path / "im.jpg", rgb)
    jpeg = FileImages([str(tmp_path / "im.jpg")], (5, 7, 3))[0]
    pil = np.asarray(Image.open(tmp_path / "im.jpg").convert("RGB")).astype(int)  # lossy: compare decoders
    assert jpeg.shape == (5, 7, 3) and np.abs(jpeg.astype(int) - pil).mean() < 2  # upsampling differs
    frames = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    first = FileImages([str(tmp_path / "anim.gif")], (4, 4, 3))[0]
    assert np.abs(first.astype(int) - 10).max() <= 2
    grey = FileImages([str(tmp_path / "im.png")], (5, 7, 1))[0]  # RGB -> grey, ITU-R 601 weights
    expected = np.round(rgb @ np.array([0.2989, 0.587, 0.114]))
    assert np.abs(grey[..., 0].astype(int) - expected).max() <= 1


def test_other_sizes_are_resized_keeping_the_aspect_ratio_and_centre_cropped(tmp_path):
    bands = np.zeros((30, 90, 3), np.uint8)
    bands[:, :30, 0] = 255  # red | green | blue
    bands[:, 30:60, 1] = 255
    bands[:, 60:, 2] = 255
    save(tmp_path / "wide.png", bands)
    out = FileImages([str(tmp_path / "wide.png")], (10, 10, 3))[0]
    assert out.shape == (10, 10, 3)
    # The middle third, all green (antialiasing blends only the outermost columns).
    np.testing.assert_array_equal(out[:, 1:9, 1], 255)
    np.testing.assert_array_equal(out[:, 1:9][..., [0, 2]], 0)
    assert out[..., 1].min() > 200 and out[:, 0, 0].max() < 60 and out[:, 9, 2].max() < 60
    assert parse_image_size("32,24") == [32, 24] and parse_image_size("16") == [16, 16]
    for bad in ("32,", "a,b", "0,4", "1,2,3", "-3,3"):
        with pytest.raises(TfvaeError, match="--image-size must be H,W"):
            parse_image_size(bad)


def test_the_most_common_size_is_the_default(tmp_path):
    for i in range(3):
        save(tmp_path / "d" / f"{i}.png", np.zeros((6, 6, 1), np.uint8))
    save(tmp_path / "d" / "big.png", np.zeros((12, 9, 1), np.uint8))
    assert scan_folder(tmp_path / "d", test_fraction=0.25).image_size == [6, 6]
    assert scan_folder(tmp_path / "d", image_size="12,9", test_fraction=0.25).image_size == [12, 9]


def test_streamed_training_batches_equal_the_in_memory_ones(tmp_path):
    """The same pipeline over files and over the decoded array: identical batches, noise
    included (the per-image keys do not depend on where pixels come from)."""
    grey_folder(tmp_path / "d", per_class=7, size=(5, 4))
    scan = scan_folder(tmp_path / "d", test_fraction=0.2)
    files = FileImages(scan.train_paths, (5, 4, 1))
    arrays = np.asarray(files)
    a = train_pipeline(files, 4, "dynamic", seed=1, noise_shape=(1, 2))
    b = train_pipeline(arrays, 4, "dynamic", seed=1, noise_shape=(1, 2))
    for (xa, ea), (xb, eb) in zip(a.take(9), b.take(9)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ea, eb)


# ---- bad input ----------------------------------------------------------------------------
def test_bad_folders_fail_in_one_line_naming_the_folder_or_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TfvaeError, match="holds no image files"):
        scan_folder(tmp_path / "empty")
    with pytest.raises(TfvaeError, match="is not a folder"):
        scan_folder(tmp_path / "missing")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"this is not a PNG")
    (junk / "b.jpg").write_bytes(b"")
    with pytest.raises(TfvaeError, match="none of the 2 image files"):
        scan_folder(junk)
    mixed = tmp_path / "mixed"
    for i in range(2):
        save(mixed / f"g{i}.png", np.zeros((4, 4, 1), np.uint8))
        save(mixed / f"c{i}.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(TfvaeError, match="mixes grey .2 files. and colour .2 files.*--channels"):
        scan_folder(mixed)
    assert scan_folder(mixed, channels=3, test_fraction=0.25).channels == 3
    small = tmp_path / "small"
    grey_folder(small, classes=("big",), per_class=5)
    save(small / "tiny" / "only.png", np.zeros((8, 6, 1), np.uint8))
    with pytest.raises(TfvaeError, match="class folder 'tiny' has 1 decodable image"):
        scan_folder(small)
    both = tmp_path / "both"
    grey_folder(both, classes=("k",))
    save(both / "stray.png", np.zeros((8, 6, 1), np.uint8))
    with pytest.raises(TfvaeError, match="both class sub-folders"):
        scan_folder(both)


def test_files_that_do_not_decode_are_skipped_counted_and_named(tmp_path):
    grey_folder(tmp_path / "d", per_class=5)
    png = (tmp_path / "d" / "a" / "000.png").read_bytes()
    (tmp_path / "d" / "a" / "truncated.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "d" / "b" / "text.jpg").write_text("hello")
    said = []
    scan = scan_folder(tmp_path / "d", say=said.append)
    assert len(scan.skipped) == 2 and len(scan.train_paths) + len(scan.test_paths) == 10
    assert len(said) == 1 and "skipping 2 of 12 files" in said[0]


def bomb_png(path, side=20000):
    """A PNG of a few hundred KB whose header declares side×side grey pixels (zeros, zlib
    level 9): decoded in full it would take side² bytes (400 MB for 20,000)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer, row, parts = zlib.compressobj(9), b"\x00" * (side + 1), []
    for _ in range(side):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path


def test_a_decompression_bomb_is_skipped_from_its_header_before_any_decoding(tmp_path):
    import resource

    grey_folder(tmp_path / "d", per_class=5)
    bomb = bomb_png(tmp_path / "d" / "a" / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    said = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    scan = scan_folder(tmp_path / "d", say=said.append)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert [p for p, _ in scan.skipped] == [str(bomb)] and "declares 400000000 pixels" in scan.skipped[0][1]
    assert "--max-image-pixels" in said[0] and len(scan.train_paths) + len(scan.test_paths) == 10
    assert grown < 200_000, f"peak memory grew by {grown} KiB: the bomb was decoded"  # 400 MB if decoded
    # The size came from the header alone (Pillow reads it without decoding a pixel).
    from tfvae.folder import header_pixels

    assert header_pixels(bomb) == 20000 * 20000


def test_an_image_folder_run_keeps_its_test_split_when_files_are_added(tmp_path):
    """A run records its test files; adding files to the folder later changes what a fresh
    held-out split would pick (training images would move into it), never the run's."""
    from tfvae.config import RunConfig
    from tfvae.folder import folder_fingerprint
    from tfvae.rundir import record_trained_config, run_dataset

    grey_folder(tmp_path / "d", per_class=10)
    cfg = RunConfig(data=DataConfig(image_dir=str(tmp_path / "d"), validation_size=2, test_fraction=0.2))
    first = load_dataset(cfg.data)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    record_trained_config(run, cfg, first.source["test_files"])
    trained_on = set(first.train.paths) | set(first.validation.paths)
    rng = np.random.default_rng(9)
    for c in ("a", "b"):  # ten new files per class, named to sort among the old ones
        for i in range(10):
            save(tmp_path / "d" / c / f"{i:03d}x.png", rng.integers(0, 256, (8, 6, 1), dtype=np.uint8))
    fresh = load_dataset(cfg.data)
    assert set(fresh.test.paths) & trained_on, "a fresh split moves training images into the test split"
    again = run_dataset(run, cfg)
    assert again.test.paths == first.test.paths and list(again.test_labels) == list(first.test_labels)
    assert not set(again.test.paths) & (set(again.train.paths) | set(again.validation.paths))
    # The fingerprint covers contents: the same names with new pixels change it.
    paths = first.train.paths + first.test.paths
    before = folder_fingerprint(tmp_path / "d", paths)
    save(tmp_path / "d" / "a" / "000.png", np.zeros((8, 6, 1), np.uint8))
    assert folder_fingerprint(tmp_path / "d", paths) != before
    # A recorded test file that is gone: one line naming it.
    Path(first.test.paths[0]).unlink()
    with pytest.raises(TfvaeError, match="no longer holds 1 of the run's 4 test files"):
        run_dataset(run, cfg)


def test_the_default_validation_size_fits_a_small_folder(tmp_path):
    grey_folder(tmp_path / "d", per_class=30)
    data = load_dataset(DataConfig(image_dir=str(tmp_path / "d")))  # the default: min(5000, a tenth)
    n = len(data.train) + len(data.validation)
    assert len(data.validation) == n // 10 and n == 54  # 60 files, 6 held out for testing
    assert DataConfig().validation_size is None


def test_cli_refuses_conflicting_or_misplaced_image_options_in_one_line(tmp_path):
    grey_folder(tmp_path / "d")
    for args, message in [
        (["--image-dir", tmp_path / "d", "--dataset", "mnist"], "--image-dir and --dataset"),
        (["--image-size", "8,8"], "--image-size applies to --image-dir data only"),
        (["--image-dir", tmp_path / "d", "--image-size", "8,x"], "--image-size must be H,W"),
        (["--image-dir", tmp_path / "d", "--idx-dir", tmp_path], "--image-dir and --idx-dir"),
    ]:
        result = run_cli("train", "--model", "vae", *args, "--run-dir", tmp_path / "never")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "never").exists()


# ---- real data: Fashion-MNIST as PNG files ------------------------------------------------
@pytest.fixture(scope="module")
def fashion_png_folder(tmp_path_factory, tfds_dir):
    """Fashion-MNIST's 10,000 test images (and 1,000 training images) written as PNG
    files into class sub-folders named by label, file names the TFDS index."""
    from conftest import _require

    _require(tfds_dir / "fashion_mnist", "prepared TFDS fashion_mnist")
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("fashion_png")
    splits = {}
    for split, n in (("test", 10000), ("train", 1000)):
        ds = tfds.as_numpy(tfds.load("fashion_mnist", split=f"{split}[:{n}]", batch_size=-1, data_dir=str(tfds_dir)))
        images, labels = ds["image"], ds["label"]
        for i, (img, label) in enumerate(zip(images, labels)):
            folder = root / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[..., 0]).save(folder / f"{i:05d}.png")
        splits[split] = (images, labels)
    return root, splits


@pytest.mark.slow
def test_a_png_folder_of_fashion_mnist_reads_exactly_the_tfds_pixels_and_labels(fashion_png_folder):
    root, splits = fashion_png_folder
    data = load_dataset(DataConfig(image_dir=str(root), validation_size=100), need_test=True)
    images, labels = splits["test"]
    index = np.asarray([int(p.rsplit("/", 1)[1][:5]) for p in data.test.paths])
    assert sorted(index.tolist()) == list(range(10000))
    np.testing.assert_array_equal(data.test_labels, labels[index])
    np.testing.assert_array_equal(np.asarray(data.test), images[index])
    assert data.class_names == [str(i) for i in range(10)] and data.image_shape == (28, 28, 1)


# ---- the discretized logistic and bits/dim -------------------------------------------------
def test_discretized_logistic_matches_its_closed_form_and_sums_to_one():
    import tensorflow as tf

    from tfvae import distributions as dist
    from tfvae.likelihoods import DiscretizedLogisticLikelihood

    rng = np.random.default_rng(0)
    loc = rng.random((3, 4, 4, 2)).astype(np.float32)
    scale = (rng.random((3, 4, 4, 2)) * 0.05 + 0.002).astype(np.float32)
    k = rng.integers(0, 256, loc.shape)
    k[0, 0, 0] = [0, 255]  # the two edge levels take the tails
    got = DiscretizedLogisticLikelihood().distribution({"loc": loc, "scale": scale}).log_prob(
        (k / 255).astype(np.float32)).numpy()
    mu, s = loc.astype(np.float64) * 255, scale.astype(np.float64) * 255
    # Salimans et al. 2017, eq. 2, in float64 and log space: log(σ(b) − σ(a)), written with
    # the survival function σ(−a) − σ(−b) where both CDFs are near 1.
    a = np.where(k == 0, -np.inf, (k - 0.5 - mu) / s)
    b = np.where(k == 255, np.inf, (k + 0.5 - mu) / s)
    log_sig = lambda t: -np.logaddexp(0, -t)  # noqa: E731
    upper_tail = (a + b) / 2 > 0
    hi, lo = np.where(upper_tail, log_sig(-a), log_sig(b)), np.where(upper_tail, log_sig(-b), log_sig(a))
    expected = (hi + np.log1p(-np.exp(lo - hi))).reshape(3, -1).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    levels = tf.constant(np.arange(256, dtype=np.float32))
    for m, sd in ((0.5, 0.1), (0.0, 0.01), (1.0, 0.3)):
        p = np.exp(dist.discretized_logistic(tf.constant(m), tf.constant(sd)).log_prob(levels).numpy())
        assert abs(p.sum() - 1) < 1e-5


def test_bits_per_dim_conversions():
    import math

    from tfvae.likelihoods import Bernoulli, DiscretizedLogisticLikelihood, Gaussian

    d = 32 * 32 * 3
    assert DiscretizedLogisticLikelihood().bits_per_dim(d * math.log(2), (32, 32, 3), "none")[0] == pytest.approx(1.0)
    assert Bernoulli().bits_per_dim(d * math.log(2), (32, 32, 3), "dynamic")[0] == pytest.approx(1.0)
    # A density on [0, 1] of x = k/255: levels 1/255 apart, so a uniform density (0 nats) gives each of
    # the 255^D cells probability 255^-D: log2(255) bits/dim, not 8 (which would need cells of width 1/256).
    assert Gaussian(0.1).bits_per_dim(0.0, (32, 32, 3), "none")[0] == pytest.approx(math.log2(255), rel=1e-12)
    # Against the level's probability mass: for σ = 0.3 (much wider than a level, 1/255), the mass of the
    # cell [k − ½, k + ½]/255 is density × 1/255 to a relative 1e-5 (the curvature term width²/24σ²), so
    # −log2(mass) per dimension is the figure to 1e-4 (D ln 256 would be 0.0056 bits/dim off).
    from scipy.stats import norm

    sigma = 0.3
    nats_one_dim = -norm.logpdf(0.0, scale=sigma)
    mass = norm.cdf(0.5 / 255, scale=sigma) - norm.cdf(-0.5 / 255, scale=sigma)
    bits = Gaussian(sigma).bits_per_dim(d * nats_one_dim, (32, 32, 3), "none")[0]
    assert bits == pytest.approx(-math.log2(mass), abs=1e-4)


# ---- colour images end to end ---------------------------------------------------------------
@pytest.fixture(scope="module")
def colour_folder(tmp_path_factory, tfds_dir):
    """1,600 MNIST training digits tinted with random colours, padded to 32×32×3, as PNG
    and JPEG files in class folders."""
    import tensorflow_datasets as tfds

    ds = tfds.as_numpy(tfds.load("mnist", split="train[:1600]", batch_size=-1, data_dir=str(tfds_dir)))
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("colour") / "digits"
    for i, (img, label) in enumerate(zip(ds["image"], ds["label"])):
        colour = rng.uniform(0.3, 1.0, 3)
        padded = np.pad(img[..., 0], 2).astype(np.float32)[..., None] / 255.0
        rgb = np.round(padded * colour * 255).astype(np.uint8)
        save(root / str(label) / f"{i:04d}.{'png' if i % 2 else 'jpg'}", rgb)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("likelihood", ["gaussian", "logistic"])
def test_a_colour_folder_trains_and_evaluate_reports_bits_per_dim(colour_folder, tmp_path, likelihood):
    run = tmp_path / "run"
    result = run_cli("train", "--model", "vae", "--image-dir", colour_folder, "--likelihood", likelihood, "--validation-size", 200,
                     "--epochs", 4, "--batch-size", 24, "--latent-dim", 8, "--conv-filters", "16,32",
                     "--hidden-units", "64", "--run-dir", run, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["image_shape"] == [32, 32, 3] and cfg["data"]["channels"] == 3
    assert cfg["meta"]["class_names"] == [str(i) for i in range(10)]
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    val = [float(r.split(",")[header.index("val_neg_elbo")]) for r in rows[1:]]
    assert len(val) == 4 and val[-1] < val[0]  # 4 epochs of 52 steps: the validation loss falls
    result = run_cli("evaluate", run, "-k", 5, "--max-examples", 50)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "in bits/dim" in result.stdout
    report = json.loads((run / "eval.json").read_text())
    bpd, nll, d = report["metrics"]["nll_bits_per_dim"], report["metrics"]["nll"], 32 * 32 * 3
    assert report["protocol"]["image_shape"] == [32, 32, 3]
    # The conversion eval.json states, exactly: a probability of the 8-bit image (logistic), or a
    # density of x = k/255 plus D ln 255 (Gaussian).
    expected = (nll + d * math.log(255)) / (d * math.log(2)) if likelihood == "gaussian" else nll / (d * math.log(2))
    assert bpd == pytest.approx(expected, rel=1e-9)
    # And the model beats the uniform distribution over the levels (log2 of 256, or of 255 cells).
    assert bpd < (math.log2(255) if likelihood == "gaussian" else 8.0)
    assert report["protocol"]["data_source"] == str(colour_folder)

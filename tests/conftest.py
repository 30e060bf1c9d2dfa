"""Shared fixtures: where real data lives, and the rule for tests that need it.

Real-data tests run in CI (``CI=true``), where a missing dataset is a failure; elsewhere
they skip with the reason.
"""

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = ROOT.parent / "shared"
TFDS_DIR = Path(os.environ.get("TFDS_DATA_DIR", SHARED / "tensorflow_datasets"))
MNIST_IDX = SHARED / "data" / "mnist-idx"


#: Test files, longest first, so that the parallel workers (pytest.ini) finish together: each
#: worker takes the next file when it is nearly done with its own. Ordered by the time each
#: file took in a CI run (`pytest --durations=60`: test_family 470 s ... test_demo 56 s).
LONGEST_FIRST = ["test_family.py", "test_faults.py", "test_latent.py", "test_disentanglement.py",
                 "test_combinations.py", "test_multiworker.py", "test_disk_faults.py", "test_models.py",
                 "test_bad_input.py", "test_cli.py", "test_hvae.py", "test_image_folder.py", "test_vqvae.py",
                 "test_demo.py"]


def pytest_collection_modifyitems(items):
    """Run the files of :data:`LONGEST_FIRST` first, in its order; the others after, as collected."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set TFDS_DATA_DIR, or place ../shared beside the project)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_litertjs() -> None:
    """LiteRT.js must be installed in demo/web: a test that needs it fails under CI=true and is
    skipped elsewhere (never passes by taking another branch)."""
    if not (ROOT / "demo" / "web" / "node_modules" / "@litertjs" / "core" / "dist" / "index.js").is_file():
        message = "LiteRT.js is not installed: (cd demo/web && npm ci)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def tfds_dir():
    """TFDS data folder holding prepared ``mnist`` (real data)."""
    _require(TFDS_DIR / "mnist", "prepared TFDS mnist")
    os.environ["TFDS_DATA_DIR"] = str(TFDS_DIR)
    return TFDS_DIR


@pytest.fixture(scope="session")
def mnist_idx_dir():
    """The original MNIST IDX files (real data)."""
    return _require(MNIST_IDX / "train-images-idx3-ubyte.gz", "MNIST IDX files").parent


def run_cli(*args, env=None, timeout=300):
    """Run ``python cli.py ARGS`` in a subprocess from the project root."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)


def built_once(tmp_path_factory, name, build):
    """A folder that ``build(folder)`` fills once for the whole test session, shared by every
    pytest-xdist worker: the first worker to ask builds it under an exclusive lock, the
    others wait for it and reuse it. Tests treat it as read-only (copy it to change it)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the workers' common temporary root
    folder = base / f"shared-{name}"
    with open(base / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed build left
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


def train_mnist_slice(tmp_path_factory, name, examples, validation, epochs, latent_dim):
    """Train on the first ``examples`` MNIST training images through the CLI, once per test
    session (:func:`built_once`); return the run dir (its stdout beside it, ``train_stdout.txt``)."""
    def build(folder):
        result = run_cli("train", "--model", "vae", "--dataset", "mnist", "--max-train-examples", examples, "--validation-size",
                         validation, "--epochs", epochs, "--latent-dim", latent_dim, "--run-dir", folder / "run")
        assert result.returncode == 0, result.stderr[-2000:]
        (folder / "train_stdout.txt").write_text(result.stdout)  # what training printed into a pipe

    return built_once(tmp_path_factory, name, build) / "run"


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, tfds_dir):
    """A barely trained MNIST model (60 steps; real data, so quantization sees real weight
    ranges). Enough for formats and contracts, not for quality. Shared: copy it to change it."""
    return train_mnist_slice(tmp_path_factory, "export_run", 3000, 500, 2, 8)


@pytest.fixture(scope="session")
def export_dir(run_dir, tmp_path_factory):
    """``run_dir`` exported with every format and quantization, as ``ROOT/m``. Shared: copy it to change it."""
    def build(root):
        result = run_cli("export", run_dir, "--name", "m", "--out", root, "--tflite", "--onnx",
                         "--quantize", "float16", "--quantize", "dynamic", "--quantize", "int8")
        assert result.returncode == 0, result.stderr[-3000:]

    return built_once(tmp_path_factory, "exported", build) / "m"


@pytest.fixture(scope="session")
def brief_run(tmp_path_factory, tfds_dir):
    """A briefly trained MNIST model worth using (about 400 steps on 10,000 images, latent 16).
    Shared: copy it to change it."""
    return train_mnist_slice(tmp_path_factory, "brief_run", 10000, 1000, 5, 16)

"""Shared fixtures: where real data lives, and the rule for tests that need it.

Real-data tests run in CI (``CI=true``), where a missing dataset is a failure; elsewhere
they skip with the reason.
"""

import os
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


def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    message = f"{what} not found at {path} (set TFDS_DATA_DIR, or place ../shared beside the project)"
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


def train_mnist_slice(tmp_path_factory, name, examples, validation, epochs, latent_dim):
    """Train on the first ``examples`` MNIST training images through the CLI; return the run dir."""
    run_dir = tmp_path_factory.mktemp(name) / "run"
    result = run_cli("train", "--dataset", "mnist", "--max-train-examples", examples, "--validation-size", validation,
                     "--epochs", epochs, "--latent-dim", latent_dim, "--run-dir", run_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, tfds_dir):
    """A barely trained MNIST model (60 steps; real data, so quantization sees real weight
    ranges). Enough for formats and contracts, not for quality."""
    return train_mnist_slice(tmp_path_factory, "export_run", 3000, 500, 2, 8)


@pytest.fixture(scope="session")
def export_dir(run_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("exported")
    result = run_cli("export", run_dir, "--name", "m", "--out", root, "--tflite", "--onnx",
                     "--quantize", "float16", "--quantize", "dynamic", "--quantize", "int8")
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "m"


@pytest.fixture(scope="session")
def brief_run(tmp_path_factory, tfds_dir):
    """A briefly trained MNIST model worth using (about 400 steps on 10,000 images, latent 16)."""
    return train_mnist_slice(tmp_path_factory, "brief_run", 10000, 1000, 5, 16)

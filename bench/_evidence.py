"""Evidence for every published figure: the result files under ``bench/results/``.

Each benchmark or measurement script ends with :func:`write_result`, which writes
``bench/results/NAME.json`` holding

* ``provenance``: the command line, the git commit (and whether the tree had uncommitted
  changes), the date, Python/TensorFlow/Keras/TFP/numpy/tfvae versions, and the machine:
  CPU model, logical cores, CPU flags that matter for speed (AVX-512, AVX512-BF16, AMX),
  and a float32 matrix-multiply peak measured in the same run (GFLOP/s; a 2048² matmul
  on all cores, best of 5), so an absolute time can be read against the machine;
* ``figures``: what was measured (units in the key names or beside them).

The README's generated sections (``bench/readme_tables.py``) are rendered from these files
only; ``tests/test_readme.py`` fails when a README figure differs from its file. Files
are strict JSON (no NaN or Infinity) written to a temporary file and renamed.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tfvae.hardware import cpu_flags  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def matmul_peak_gflops(sizes=(1024, 2048, 4096), repeats: int = 5) -> float:
    """float32 matrix-multiply rate of this machine (GFLOP/s, all cores): 2·n³ FLOPs per
    n×n TF matmul, the fastest of ``repeats`` timed calls after a warm-up, for the size of
    ``sizes`` that runs fastest (which size that is differs between machines of one kind; on
    some, 4096² runs far below the smaller sizes)."""
    import tensorflow as tf

    rates = []
    for n in sizes:
        a = tf.random.normal([n, n], seed=1)
        b = tf.random.normal([n, n], seed=2)
        tf.linalg.matmul(a, b).numpy()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            tf.linalg.matmul(a, b).numpy()
            best = min(best, time.perf_counter() - start)
        rates.append(2 * n ** 3 / best / 1e9)
    return max(rates)


def git_commit() -> dict:
    """{"commit": HEAD's hash, "dirty": uncommitted changes to tracked code (README.md,
    bench/results/ and exported/mnist/, which these scripts write, do not count)}."""
    sys.path.insert(0, str(ROOT))
    from tfvae.provenance import git_commit as commit

    return commit(ignore=("README.md", "bench/results/", "exported/mnist/"))


def versions() -> dict:
    out = {"python": platform.python_version()}
    for module in ("tensorflow", "keras", "tensorflow_probability", "numpy", "tfvae"):
        try:
            mod = __import__(module)
            out[module] = getattr(mod, "__version__", None)
        except Exception:  # noqa: BLE001 (a missing package is recorded as None)
            out[module] = None
    return out


def provenance(peak_gflops=None, peak_threads="all") -> dict:
    """Command line, commit, date, versions and machine (with a measured matmul peak and
    the threads it was measured on)."""
    sys.path.insert(0, str(ROOT))
    return {
        "command": " ".join(["python"] + [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "git": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": versions(),
        "machine": {"cpu_model": cpu_model(), "logical_cores": os.cpu_count(), "cpu_flags": cpu_flags(),
                    "matmul_peak_gflops": peak_gflops if peak_gflops is not None else matmul_peak_gflops(),
                    "matmul_peak_threads": peak_threads},
    }


def one_line_errors(parser):
    """Make an argparse parser report a bad argument as one line on stderr (``error: PROG:
    message``, exit 2) instead of its usage block; returns the parser."""
    def error(message):
        sys.stderr.write(f"error: {parser.prog}: {message}\n")
        sys.exit(2)

    parser.error = error
    return parser


def result_name(value: str) -> str:
    """``--result``'s type for argparse: a name (letters, digits, ``-``, ``_``), or a path to
    ``bench/results/NAME.json`` given as such (taken as NAME); '' (skip) stays ''.

    Raises:
        argparse.ArgumentTypeError: another path or name (one line from argparse, exit 2,
            before any measurement runs).
    """
    import argparse
    import re

    if value == "":
        return value
    path = Path(value)
    if path.suffix == ".json" and (path if path.is_absolute() else Path.cwd() / path).resolve().parent == \
            RESULTS.resolve():
        value = path.stem
    if not re.fullmatch(r"[A-Za-z0-9_-]+", value):
        raise argparse.ArgumentTypeError(f"give a name of letters, digits, - and _ (written as bench/results/NAME.json) "
                                         f"or a path bench/results/NAME.json, got {value!r}")
    return value


def write_result(name: str, figures: dict, peak_gflops=None, sources=None, peak_threads="all") -> Path:
    """Write ``bench/results/NAME.json`` = {provenance, figures, sources}; strict JSON, atomic.

    Args:
        name: file stem (letters, digits, ``-``, ``_``).
        figures: the measured values (JSON-serializable, finite).
        peak_gflops: a matmul peak already measured in this run (else measured here).
        peak_threads: the threads that peak was measured on (``"all"`` or a number).
        sources: result files this one was assembled from (paths relative to the project).

    Raises:
        ValueError: a figure is NaN or infinite (strict JSON).
    """
    name = result_name(name)
    record = {"provenance": provenance(peak_gflops, peak_threads), "figures": figures, "sources": sources or []}
    text = json.dumps(record, indent=2, allow_nan=False) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=RESULTS)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    print(f"written: {path.relative_to(ROOT)}")
    return path

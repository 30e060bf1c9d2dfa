"""A full disk and a read-only folder, for real: each command that writes fails in one line.

The tests mount a small tmpfs (filled up to a few KB) and a read-only bind mount (CI runs as
root; elsewhere they skip without root). Each command must exit non-zero with one
``error:`` line, no traceback, no half-written or temporary file left, and every file that
was there before unchanged.
"""

import hashlib
import os
import shutil
import subprocess

import pytest

from conftest import run_cli

pytestmark = pytest.mark.slow


def _need_root():
    if os.geteuid() != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the disk-fault tests mount file systems and need root (CI runs as root)")
        pytest.skip("mounting a tmpfs or a read-only bind mount needs root")


def _mount(*args):
    result = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        message = f"mount {' '.join(map(str, args))} failed: {result.stderr.strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def tree(folder):
    """{relative path: sha256} of every file under ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def assert_clean_failure(result, folder, before, what):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, f"{what}: exit 0"
    assert "Traceback" not in result.stderr, f"{what}: traceback\n{result.stderr[-2000:]}"
    assert len(lines) >= 1 and lines[-1].startswith("error: "), f"{what}: {result.stderr[-1000:]}"
    after = tree(folder)
    changed = [p for p in before if after.get(p) != before[p] and not p.endswith(".lock")]
    added = [p for p in after if p not in before and not p.endswith(".lock")]
    assert not changed, f"{what}: changed {changed}"
    assert not added, f"{what}: left {added}"
    return lines[-1]


@pytest.fixture()
def full_disk(tmp_path, run_dir):
    """A copy of a trained run on a tmpfs with no space left."""
    _need_root()
    mount = tmp_path / "full"
    mount.mkdir()
    size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
    _mount("-t", "tmpfs", "-o", f"size={size + (4 << 20)}", "tmpfs", mount)
    try:
        shutil.copytree(run_dir, mount / "run")
        (mount / "run" / "eval.json").write_text('{"protocol": {}, "metrics": {"nll": 1.0}}\n')
        (mount / "out").mkdir()
        with open(mount / "filler", "wb", buffering=0) as fh:  # fill it to the last block
            try:
                while True:
                    fh.write(b"\0" * 4096)
                    fh.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture()
def read_only(tmp_path, run_dir):
    """A copy of a trained run behind a read-only bind mount."""
    _need_root()
    source, mount = tmp_path / "src", tmp_path / "ro"
    shutil.copytree(run_dir, source / "run")
    (source / "run" / "eval.json").write_text('{"protocol": {}, "metrics": {"nll": 1.0}}\n')
    mount.mkdir()
    _mount("--bind", source, mount)
    try:
        _mount("-o", "remount,bind,ro", mount)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


COMMANDS = [
    ("train", lambda m: ["train", "--model", "vae", "--dataset", "mnist", "--max-train-examples", 500, "--validation-size", 100,
                         "--epochs", 1, "--latent-dim", 4, "--run-dir", m / "newrun"]),
    ("evaluate", lambda m: ["evaluate", m / "run", "--iw-samples", 2, "--max-examples", 20]),
    ("export", lambda m: ["export", m / "run", "--out", m / "out", "--name", "e", "--tflite"]),
    ("sample", lambda m: ["sample", m / "run", "-n", 16, "--out", m / "out" / "s.png"]),
    ("interpolate", lambda m: ["interpolate", m / "run", "--from", 0, "--to", 1]),
    ("traverse", lambda m: ["traverse", m / "run", "--dims", 2, "--steps", 3]),
    ("inpaint", lambda m: ["inpaint", m / "run", "-n", 2, "--steps", 2]),
    ("anomaly", lambda m: ["anomaly", m / "run", "--corrupt", "blank", "--max-examples", 50]),
]


@pytest.mark.parametrize("name", [c[0] for c in COMMANDS])
def test_full_disk(full_disk, name, tfds_dir):
    args = dict(COMMANDS)[name](full_disk)
    before = tree(full_disk)
    result = run_cli(*args)
    line = assert_clean_failure(result, full_disk, before, name)
    print(f"full disk, {name}: exit {result.returncode}: {line}")


@pytest.mark.parametrize("name", [c[0] for c in COMMANDS])
def test_read_only_folder(read_only, name, tfds_dir):
    args = dict(COMMANDS)[name](read_only)
    if name in ("export", "sample"):
        args = [a if a != read_only / "out" and a != read_only / "out" / "s.png" else
                (read_only / "run" / "figures" if name == "export" else read_only / "run" / "s.png") for a in args]
    before = tree(read_only)
    result = run_cli(*args)
    line = assert_clean_failure(result, read_only, before, name)
    print(f"read-only folder, {name}: exit {result.returncode}: {line}")

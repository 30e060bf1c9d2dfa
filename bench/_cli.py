"""Shared helper of the bench scripts: run ``python cli.py ...`` from the project root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    """Echo and run ``python cli.py ARGS`` in the project root; raises CalledProcessError on failure."""
    cmd = [sys.executable, str(ROOT / "cli.py"), *map(str, args)]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def train_once(run_dir, *train_args):
    """Train into ``run_dir`` with ``train_args`` unless it finished (``summary.json``); resume
    it when it started and did not finish."""
    run_dir = Path(run_dir)
    if (run_dir / "summary.json").is_file():
        return
    if run_dir.exists():
        cli("train", "--resume", run_dir)
    else:
        cli("train", "--run-dir", run_dir, *train_args)

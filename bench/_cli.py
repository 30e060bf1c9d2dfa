"""Shared helper of the bench scripts: run ``python cli.py ...`` from the project root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    """Echo and run ``python cli.py ARGS`` in the project root.

    Raises:
        SystemExit: the command failed (its own one-line error is already on stderr); the bench
            script stops with that status and one line naming the command.
    """
    cmd = [sys.executable, str(ROOT / "cli.py"), *map(str, args)]
    print("$", " ".join(cmd[1:]), flush=True)
    status = subprocess.run(cmd, cwd=ROOT).returncode
    if status:
        print(f"{Path(sys.argv[0]).name}: `{' '.join(cmd[1:])}` failed with status {status}", file=sys.stderr)
        raise SystemExit(status)


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

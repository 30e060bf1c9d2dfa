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

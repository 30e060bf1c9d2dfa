"""Where a result came from: the checkout's git commit (no TensorFlow imported)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit(ignore=()) -> dict:
    """{"commit": HEAD's hash or None, "dirty": tracked files changed}; paths equal to an
    entry of ``ignore``, or under one ending in "/", do not count as changes."""
    def git(*args):
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        # rstrip: a porcelain status line starts with a space (" M path") that must stay
        return out.stdout.rstrip() if out.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "-uno").splitlines()]
    code = [p for p in changed if not any(p == i or (i.endswith("/") and p.startswith(i)) for i in ignore)]
    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(code)}

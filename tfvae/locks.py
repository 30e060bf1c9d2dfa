"""One writer at a time: an advisory lock per run directory and per export name.

``FOLDER/.lock`` is locked with ``fcntl.flock`` (released by the kernel when the process
ends, even on SIGKILL, so a crash never leaves a stale lock) and holds the holder's pid
and command, which the refusal names. This module imports no TensorFlow.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from .errors import TfvaeError

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def folder_lock(folder, command: str, wait_seconds: float = 0.0, say=None):
    """Hold ``FOLDER/.lock`` for the duration of the ``with`` block.

    Args:
        folder: a run directory or an export folder (must exist).
        command: what this process is doing (written into the lock for others to read).
        wait_seconds: wait up to this long for the holder to finish (0: refuse at once).
        say: called once with a line when waiting starts.

    Raises:
        TfvaeError: another process holds the lock (names its pid and command), or the
            lock file cannot be created (a read-only folder).
    """
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise TfvaeError(f"{folder}: cannot lock it for {command} ({exc.strerror})") from None
    try:
        deadline = time.monotonic() + wait_seconds
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TfvaeError(f"{folder} is in use by {_holder(path)}; wait for it to finish "
                                     f"(or stop it), then run {command} again") from None
                if say is not None and not told:
                    say(f"waiting for {_holder(path)} to release {folder}")
                    told = True
                time.sleep(0.2)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} ({command})\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock

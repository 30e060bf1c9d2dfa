"""Hide what native libraries (TensorFlow, the TFLite converter, LiteRT) print themselves.

Their C++ start-up and INFO lines go straight to file descriptors 1 and 2, past Python's
logging, so the only way to keep a CLI's output readable is to point those descriptors
at /dev/null for the duration. Python exceptions raised inside are unaffected: they
propagate and are shown after the descriptors are restored.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def native_output_silenced(fds=(2,)):
    """Within the block, writes to the given file descriptors (default: stderr) vanish."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in fds}
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)

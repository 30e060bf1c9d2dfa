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


def quiet_tensorflow(before_first_op=None):
    """Import TensorFlow with its C++ start-up chatter (absl, oneDNN, CUDA probing) hidden.

    That chatter is written to file descriptor 2 before TF's own log settings apply, so
    fd 2 is pointed at /dev/null while TensorFlow loads and initialises its devices;
    Python errors raised meanwhile are still shown, after fd 2 is restored.
    ``before_first_op``: called before any op runs (e.g. to create a
    MultiWorkerMirroredStrategy, which must come first).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    with native_output_silenced():
        import tensorflow as tf

        if before_first_op is not None:
            before_first_op()
        tf.constant(0.0) + 1.0  # device initialisation happens here

"""Finding what a command works on when the user names nothing: the latest finished run
under ``runs/`` and the newest export under ``exported/``. No TensorFlow is imported.
"""

from __future__ import annotations

from pathlib import Path

from .errors import TfvaeError

RUNS = Path("runs")
EXPORTS = Path("exported")


def latest_run(root=RUNS) -> Path:
    """The most recently finished run under ``root``: the folder whose ``summary.json``
    (written when training ends) is newest; unfinished runs are skipped.

    Raises:
        TfvaeError: no finished run under ``root``: names the newest interrupted run (a
            ``config.json`` without ``summary.json``) and the two ways on, or the command
            that makes a run.
    """
    root = Path(root)
    runs = [p for p in (root.iterdir() if root.is_dir() else []) if (p / "config.json").is_file()]
    finished = [p for p in runs if (p / "summary.json").is_file()]
    if not finished and runs:
        newest = max(runs, key=lambda p: ((p / "config.json").stat().st_mtime, p.name))
        raise TfvaeError(f"no finished run under {root}/; {newest} was interrupted before it finished: finish it with "
                         f"python cli.py train --resume {newest}, or use it as it is by passing it as RUN_DIR")
    if not finished:
        raise TfvaeError(f"no finished run under {root}/; train one with: python cli.py train --dataset mnist "
                         f"(or name a RUN_DIR)")
    return max(finished, key=lambda p: ((p / "summary.json").stat().st_mtime, p.name))


def latest_export(root=EXPORTS, need: str = "tflite/*/decoder*.tflite") -> Path:
    """The newest export under ``root`` that has a file matching ``need``: the one whose
    newest ``tflite/<v>/model_card.json`` was written last (a shipped export's files date
    from the checkout, so a user's own later export comes first).

    Raises:
        TfvaeError: no such export under ``root`` (names the command that makes one).
    """
    root = Path(root)
    found = []
    for p in (root.iterdir() if root.is_dir() else []):
        cards = list(p.glob("tflite/*/model_card.json"))
        if cards and any(p.glob(need)):
            found.append((max(c.stat().st_mtime for c in cards), p.name, p))
    if not found:
        flag = "--onnx" if need.startswith("onnx/") else "--tflite"
        raise TfvaeError(f"no export under {root}/ has {need}; make one with: python cli.py export RUN_DIR {flag} "
                         f"(or name an EXPORT_DIR)")
    return max(found)[2]

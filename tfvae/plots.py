"""Figures (matplotlib, Agg backend): image grids and loss curves."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_mosaic(images, rows: int, gap: int | None = None) -> np.ndarray:
    """Tile images float [N, H, W, C] into one array [rows·(H+gap)−gap, cols·(W+gap)−gap, C],
    row by row, with white (1.0) gaps of ``gap`` pixels (default: about 1/14 of H) and white
    empty cells."""
    images = np.clip(np.asarray(images, dtype=np.float32), 0.0, 1.0)
    n, h, w, c = images.shape
    cols = int(np.ceil(n / rows))
    gap = max(1, round(h / 14)) if gap is None else gap
    mosaic = np.ones((rows * (h + gap) - gap, cols * (w + gap) - gap, c), np.float32)
    for i in range(n):
        r, q = divmod(i, cols)
        mosaic[r * (h + gap):r * (h + gap) + h, q * (w + gap):q * (w + gap) + w] = images[i]
    return mosaic


def save_image_grid(images, path, rows: int, title: str | None = None, row_labels=None) -> None:
    """Save images float [N, H, W, C] in [0, 1] as a grid of ``rows`` rows (PNG), drawn as
    one mosaic (one ``imshow``: fast enough to redraw every epoch)."""
    plt = _pyplot()
    images = np.asarray(images, dtype=np.float32)
    n, h, w, c = images.shape
    cols = int(np.ceil(n / rows))
    mosaic = image_mosaic(images, rows)
    label_width = 0.2 + 0.075 * max(len(str(label)) for label in row_labels) if row_labels else 0  # inches
    fig = plt.figure(figsize=(cols * 0.9 + max(0.8, label_width) * bool(row_labels), rows * 0.9 + (0.4 if title else 0)))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray" if c == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if row_labels:
        gap = (mosaic.shape[0] - rows * h) / max(rows - 1, 1)
        ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(row_labels))], labels=list(row_labels), fontsize=9)
        ax.tick_params(axis="y", length=0)
    top = 1.0
    if title:
        fig.suptitle(title, fontsize=10, y=0.995)
        top = 1.0 - 0.3 / fig.get_figheight()  # keep the title clear of the first row
    fig.tight_layout(pad=0.2, rect=(0, 0, 1, top))
    save_figure(fig, path)


def save_figure(fig, path, dpi: int = 100) -> None:
    """``fig.savefig`` to a temporary file beside ``path``, then rename: an interrupted or
    failed write (a full disk) leaves the old picture, never half of a new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise
    finally:
        _pyplot().close(fig)


def check_png_out(out, force: bool = False) -> Path:
    """Validate an output PNG path before any work is done.

    Raises:
        TfvaeError: not a .png name, the file exists (without ``force``), or its folder is missing.
    """
    from .errors import TfvaeError

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise TfvaeError(f"--out {out}: expected a .png file name")
    if out.exists() and not force:
        raise TfvaeError(f"--out {out} already exists; pass --force to replace it")
    if not out.parent.is_dir():
        raise TfvaeError(f"--out {out}: folder {out.parent} does not exist")
    return out


def save_square_grid(images, out, title: str) -> Path:
    """Save images [N, H, W, C] as a near-square grid, written to a temporary file and renamed."""
    from .errors import TfvaeError

    out = Path(out)
    try:
        save_image_grid(images, out, rows=max(1, round(len(images) ** 0.5)), title=title)
    except OSError as exc:
        raise TfvaeError(f"--out {out}: cannot write it ({exc.strerror or exc})") from None
    return out


#: The per-epoch panels of ``figures/loss.png``: metrics.csv column and title, in order.
LOSS_PANELS = [("neg_elbo", "−ELBO (nats/image)"), ("reconstruction", "reconstruction −E_q log p(x|z) (nats/image)"),
               ("kl", "KL(q‖p) (nats/image)"), ("tc", "total correlation (nats/image)"),
               ("commitment", "commitment ‖z_e − sg(e)‖²"), ("perplexity", "codebook perplexity")]


def save_loss_curves(metrics_csv, path) -> None:
    """Plot each recorded training term per epoch, train and validation, from ``metrics.csv``.

    The panels are those of :data:`LOSS_PANELS` whose column the run recorded (−ELBO,
    reconstruction and KL for a VAE; reconstruction, commitment and codebook perplexity for a
    VQ-VAE), at most four. Each panel's axis spans the epochs after the first fifth (at least
    after the first): the early epochs' curves run off the top when they are far above the rest.
    """
    plt = _pyplot()
    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    panels = [(key, label) for key, label in LOSS_PANELS if rows[0].get(key) not in (None, "")][:4]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6), squeeze=False)
    axes = axes[0]
    for ax, (key, label) in zip(axes, panels):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = [float(r[prefix + key]) for r in rows if r.get(prefix + key) not in (None, "")]
            if values:
                ax.plot(epochs[: len(values)], values, style, label="validation" if prefix else "train")
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    # Scale each axis to the epochs after the first fifth (at least the first epoch), so the
    # part that decides the run (convergence, the train/validation gap) is visible: the early
    # epochs can be orders of magnitude off (a KL warm-up's first epoch, with its weight near 0;
    # the validation −ELBO of EMA weights that still hold the initialization).
    if len(rows) > 2:
        later = rows[max(1, len(rows) // 5):]
        for ax, (key, _) in zip(axes, panels):
            vals = [float(r[prefix + key]) for r in later for prefix in ("", "val_") if r.get(prefix + key)]
            if vals:
                lo, hi = min(vals), max(vals)
                ax.set_ylim(lo - 0.05 * (hi - lo + 1), hi + 0.05 * (hi - lo + 1))
    # Fixed margins rather than tight_layout, which took most of the time of a redraw every epoch.
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.14, top=0.9, wspace=0.22)
    save_figure(fig, path)

"""``compare``: the model family on one table (and one picture).

Per run, on the run's test split binarized as in ``evaluate``:

* test NLL (importance-weighted, K samples; from ``eval.json`` when its protocol (K,
  images, seed, checkpoint) is the one asked for, else computed here; ``eval.json`` is
  never written or replaced by ``compare``) and −ELBO for the models that define them (vae, cvae; cvae's is log p(x|y));
  "n/a" for ae and pca;
* reconstruction error of x̂ = E[x | z = E_q[z|x]]: binary cross-entropy Σ_pixels and mean
  squared error (mean over pixels), both averaged over images;
* active units: Cov_x(E[z_d|x]) > 0.01 (Burda et al. 2015, section 5.2);
* sample quality of ``n_samples`` generated likelihood means against the test images
  (grey levels): ``fd_classifier``, label entropy, class coverage (``tfvae.quality``);
  an autoencoder gets two rows: z ~ N(0, I) and z ~ the Gaussian fitted to its codes;
* training minutes (``summary.json``).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from .config import atomic_write_text, latent_group_sizes
from .errors import TfvaeError
from .models import registry

COLUMNS = [
    ("run", "run"), ("model", "model"), ("latent_dim", "latent dim"), ("beta", "β"), ("objective", "objective"),
    ("prior", "prior"), ("sampling", "z for samples"), ("nll", "test NLL (nats)"), ("iw_samples", "K"),
    ("neg_elbo", "−ELBO (nats)"), ("bce", "recon. BCE (nats)"), ("mse", "recon. MSE"),
    ("active_units", "active units"), ("fd_classifier", "fd_classifier"), ("label_entropy", "label entropy (nats)"),
    ("class_coverage", "class coverage"), ("train_minutes", "train min"),
]
SAMPLES_SHOWN = 10


def reconstruction_errors(model, images, labels=None, batch_size: int = 1000):
    """Per-image (binary cross-entropy Σ_pixels in nats, mean squared error over pixels)
    of x̂ = E[x | z = E[z|x]] for images [N, H, W, C]: two float64 arrays [N], and the
    codes E[z|x] float32 [N, D]."""
    bce, mse, codes = [], [], []
    for i in range(0, len(images), batch_size):
        x = np.asarray(images[i:i + batch_size], np.float32)
        y = None if labels is None else labels[i:i + batch_size]
        z = np.asarray(model.encode_mean(x, y))
        p = np.clip(np.asarray(model.decode_mean(z, y), np.float64), 1e-7, 1 - 1e-7)
        axes = tuple(range(1, x.ndim))
        bce.append(-np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=axes))
        mse.append(np.mean((x - p) ** 2, axis=axes))
        codes.append(z)
    return np.concatenate(bce), np.concatenate(mse), np.concatenate(codes)


def _fmt(value, digits=2):
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def run_rows(run_dir, classifier, data, iw_samples: int = 1000, max_examples=None, n_samples: int = 10000,
             seed: int = 0, say=print):
    """Table rows (dicts keyed by :data:`COLUMNS`) and sample images for one run.

    Returns:
        (rows, shown): ``shown`` is a list of float32 [SAMPLES_SHOWN, H, W, C] per row.
    """
    from .data import binarize_fixed
    from .evaluate import evaluate_run, matching_report
    from .quality import sample_quality
    from .rundir import load_model
    from .codes import sample_means

    run_dir = Path(run_dir)
    model, cfg = load_model(run_dir)
    kind = cfg.model.model
    family = registry.of(cfg)
    raw = data.test if max_examples is None else data.test[:max_examples]
    images = binarize_fixed(raw, cfg.data.binarization, cfg.data.binarization_seed)
    onehot = None
    if family.conditional:
        onehot = np.eye(cfg.model.num_classes, dtype=np.float32)[data.test_labels[:len(raw)]]
    bce, mse, codes = reconstruction_errors(model, images, onehot)
    activity = np.var(codes.astype(np.float64), axis=0)
    nll = neg_elbo = k = None
    if family.evaluation == "iw_nll":
        # An eval.json is reused only when its protocol is the one asked for; compare never
        # writes or replaces it (evaluate does).
        report = matching_report(run_dir, iw_samples, len(raw), seed)
        if report is None:
            say(f"{run_dir}: evaluating (K={iw_samples}, {len(raw)} test images, seed {seed}; not written)")
            report = evaluate_run(run_dir, iw_samples=iw_samples, max_examples=max_examples, seed=seed, progress=False,
                                  write=False)
        else:
            say(f"{run_dir}: reusing eval.json (same K, images, seed and checkpoint)")
        nll, neg_elbo, k = report["metrics"]["nll"], report["metrics"]["neg_elbo"], report["protocol"]["iw_samples"]
    summary_path = run_dir / "summary.json"
    minutes = json.loads(summary_path.read_text()).get("seconds", float("nan")) / 60 if summary_path.is_file() else None
    reference = data.test.astype(np.float32) / 255.0
    sources = ["prior", "fitted"] if family.fitted_codes and getattr(model, "code_gaussian", None) is not None \
        else ["prior"]
    rows, shown = [], []
    for source in sources:
        samples = sample_means(model, n_samples, seed=seed, source=source)
        quality = sample_quality(classifier, samples, reference)
        if source == "fitted":
            sampling = "N(mean, cov) of training codes"
        else:
            sampling = {"standard": "N(0, I)", "mog": "mixture prior", "vamp": "VampPrior"}[cfg.model.prior]
            if family.latent_groups:
                sampling = f"hierarchical prior, {len(latent_group_sizes(cfg.model))} groups"
            if family.discrete_codes:
                sampling = "learned autoregressive prior over the code grid"
            if family.conditional:
                sampling += ", labels cycled"
        rows.append({
            "run": run_dir.name, "model": kind, "latent_dim": cfg.model.latent_dim,
            "beta": cfg.train.beta if family.variational else None,
            "objective": (f"iwae k={cfg.train.train_iw_samples}" if cfg.train.objective == "iwae" else "elbo")
            if family.variational else family.objective_label,
            "prior": cfg.model.prior if family.variational else None,
            "sampling": sampling, "nll": nll, "iw_samples": k, "neg_elbo": neg_elbo,
            "bce": float(np.mean(bce)), "mse": float(np.mean(mse)),
            "active_units": int(np.sum(activity > 0.01)),
            "fd_classifier": quality["fd_classifier"], "label_entropy": quality["label_entropy"],
            "class_coverage": quality["class_coverage"], "train_minutes": minutes,
        })
        shown.append(samples[:SAMPLES_SHOWN])
    return rows, shown


def format_markdown(rows) -> str:
    """The rows as a Markdown table (numbers to 2 decimals, "n/a" where undefined)."""
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_fmt(r[key]) for key, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, rule] + body) + "\n"


def format_csv(rows) -> str:
    """The rows as CSV (full precision; empty cells where undefined)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([key for key, _ in COLUMNS])
    for r in rows:
        writer.writerow(["" if r[key] is None else r[key] for key, _ in COLUMNS])
    return out.getvalue()


def format_text(rows) -> str:
    """A plain-text table for the terminal."""
    cells = [[title for _, title in COLUMNS]] + [[_fmt(r[key]) for key, _ in COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells)


def compare_runs(run_dirs, out_dir, iw_samples: int = 1000, max_examples=None, n_samples: int = 10000,
                 seed: int = 0, force: bool = False, data_dir=None, say=print) -> dict:
    """Compare runs; write OUT/compare.csv, OUT/compare.md and OUT/compare.png.

    The feature classifier is cached under the first run's parent folder (the run root).

    Returns:
        ``{"rows": [...], "files": [...], "classifier": info}``.

    Raises:
        TfvaeError: no runs; a folder that is not a run; runs of different datasets;
            output files that exist (without ``force``); n_samples < 2.
    """
    from . import plots
    from .quality import get_classifier
    from .rundir import read_config, run_dataset

    if not run_dirs:
        raise TfvaeError("compare needs at least one RUN_DIR")
    if n_samples < 2:
        raise TfvaeError(f"--samples must be at least 2, got {n_samples}")
    configs = [read_config(r) for r in run_dirs]  # "not a run" fails here, before any work
    datasets = {c.data.dataset for c in configs}
    if len(datasets) > 1:
        raise TfvaeError(f"compare needs runs of one dataset, got {', '.join(sorted(datasets))}")
    out_dir = Path(out_dir)
    files = [out_dir / f"compare.{ext}" for ext in ("csv", "md", "png")]
    existing = [str(f) for f in files if f.exists()]
    if existing and not force:
        raise TfvaeError(f"--out: {', '.join(existing)} already exist; use --force to replace, or another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one traced evaluation function per run is expected
    data_cfg = configs[0].data
    data_cfg.max_train_examples = None  # the classifier learns from the whole training split
    if data_dir is not None:
        data_cfg.data_dir = data_dir
    data = run_dataset(run_dirs[0], configs[0])
    classifier = get_classifier(data, data_cfg.dataset, Path(run_dirs[0]).resolve().parent, say=say)
    rows, shown = [], []
    for run_dir in run_dirs:
        r, s = run_rows(run_dir, classifier, data, iw_samples=iw_samples, max_examples=max_examples,
                        n_samples=n_samples, seed=seed, say=say)
        rows += r
        shown += s
    atomic_write_text(files[0], format_csv(rows))
    atomic_write_text(files[1], format_markdown(rows))
    labels = [f"{r['run']}\n{r['sampling']}" for r in rows]
    plots.save_image_grid(np.concatenate(shown), files[2], rows=len(rows), row_labels=labels,
                          title=f"samples E[x|z] per run (seed {seed})")
    return {"rows": rows, "files": [str(f) for f in files], "classifier": classifier.info}

"""Using the latent space: interpolation, analogies, 2-D maps, and few-label classification.

Every function reads a run directory, works on its test split (binarized exactly as
``evaluate`` does) and writes a figure and a JSON of its numbers into ``RUN_DIR/figures``
(or another folder).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from . import plots
from .config import atomic_write_text, json_text
from .data import binarize_fixed
from .errors import TfvaeError
from .models import registry
from .codes import posterior_means, posterior_parameters
from .rundir import load_model, run_dataset


def test_split(run_dir, checkpoint="best"):
    """(model, cfg, data, test images float32 [N, H, W, C] binarized as in ``evaluate``).

    Raises:
        TfvaeError: not a run, or the dataset has no test split.
    """
    model, cfg = load_model(run_dir, checkpoint)
    data = run_dataset(run_dir, cfg)
    images = binarize_fixed(data.test, cfg.data.binarization, cfg.data.binarization_seed)
    return model, cfg, data, images


def sweep_codes(base, dims, values) -> np.ndarray:
    """Codes for a traversal: row r of ``len(dims)`` rows is ``base`` [D] with dimension
    ``dims[r]`` set to ``values`` ([S], or [len(dims), S] for one sweep per row), S codes a row:
    [len(dims) · S, D], same dtype as ``base``."""
    values = np.broadcast_to(values, (len(dims), np.shape(values)[-1]))
    steps = values.shape[1]
    z = np.repeat(np.asarray(base)[None], len(dims) * steps, axis=0)
    for r, d in enumerate(dims):
        z[r * steps:(r + 1) * steps, d] = values[r]
    return z


def lerp(a, b, t):
    """(1 − t)·a + t·b for a, b [D] and t [T]: [T, D]."""
    t = np.asarray(t, dtype=np.float64)[:, None]
    return ((1 - t) * a + t * b).astype(np.float32)


def slerp(a, b, t):
    """Spherical interpolation (Shoemake 1985) between a and b [D] for t [T]: [T, D].

    Follows the great circle between the directions of a and b, with the norm
    interpolated linearly, so every point keeps a norm between ‖a‖ and ‖b‖ — under
    N(0, I) in many dimensions that is where the prior's mass lies (its typical set),
    whereas the linear midpoint of two typical codes is atypically short. Falls back to
    :func:`lerp` when a and b are (anti)parallel.
    """
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    t = np.asarray(t, dtype=np.float64)[:, None]
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    if na == 0 or nb == 0:
        return lerp(a, b, t[:, 0])
    ua, ub = a64 / na, b64 / nb
    omega = np.arccos(np.clip(ua @ ub, -1.0, 1.0))
    if np.sin(omega) < 1e-6:
        return lerp(a, b, t[:, 0])
    direction = (np.sin((1 - t) * omega) * ua + np.sin(t * omega) * ub) / np.sin(omega)
    return (direction * ((1 - t) * na + t * nb)).astype(np.float32)


def output_folder(run_dir, out) -> Path:
    """``out``, or RUN_DIR/figures. Raises TfvaeError when it is not a folder."""
    folder = Path(out) if out else Path(run_dir) / "figures"
    if not folder.is_dir():
        raise TfvaeError(f"--out {folder} is not a folder")
    return folder


def _check_index(name, value, n):
    if not 0 <= value < n:
        raise TfvaeError(f"{name} {value} is outside the test set (0 … {n - 1})")


def interpolate(run_dir, start: int, end: int, steps: int = 10, method: str = "linear", analogy=None,
                out=None, checkpoint="best") -> dict:
    """Decode along a path between the posterior means of test images ``start`` and ``end``.

    With ``analogy=(A, B, C)`` also decode z_C + (z_B − z_A) (Kingma & Welling 2013's
    "algebraic manipulation of codes" in its simplest form).

    Writes ``interpolation.png`` (originals at both ends) and ``interpolation.json``.

    Raises:
        TfvaeError: an index outside the test set, steps < 2, or an unknown method.
    """
    if steps < 2:
        raise TfvaeError(f"--steps must be at least 2, got {steps}")
    if method not in ("linear", "slerp"):
        raise TfvaeError(f"--method must be linear or slerp, got {method!r}")
    folder = output_folder(run_dir, out)
    model, cfg, data, images = test_split(run_dir, checkpoint)
    n = len(images)
    for name, value in (("--from", start), ("--to", end)) + tuple(zip(("--analogy A", "--analogy B", "--analogy C"),
                                                                         analogy or ())):
        _check_index(name, value, n)
    z = posterior_means(model, images[[start, end]])
    t = np.linspace(0.0, 1.0, steps)
    path = (slerp if method == "slerp" else lerp)(z[0], z[1], t)
    decoded = model.decode_mean(tf.constant(path)).numpy()
    row = np.concatenate([images[[start]], decoded, images[[end]]])
    result = {"from": start, "to": end, "steps": steps, "method": method,
              "norms": [float(v) for v in np.linalg.norm(path, axis=1)],
              "endpoint_norms": [float(v) for v in np.linalg.norm(z, axis=1)]}
    grid = [row]
    if analogy:
        a, b, c = analogy
        za, zb, zc = posterior_means(model, images[[a, b, c]])
        target = model.decode_mean(tf.constant((zc + zb - za)[None])).numpy()
        pad = np.zeros((len(row) - 4,) + images.shape[1:], np.float32)
        grid.append(np.concatenate([images[[a, b, c]], target, pad]))
        result["analogy"] = {"A": a, "B": b, "C": c, "decoded": "z_C + (z_B - z_A)"}
    plots.save_image_grid(np.concatenate(grid), folder / "interpolation.png", rows=len(grid),
                          title=f"test {start} → {end}, {method}" + (" ; analogy A, B, C → C + (B − A)" if analogy else ""))
    atomic_write_text(folder / "interpolation.json", json_text(result))
    return result


def latent_map(run_dir, tsne: bool = False, grid: int = 20, out=None, checkpoint="best", max_points: int = 10000) -> dict:
    """Scatter of test posterior means coloured by label (raw when D = 2, else PCA and,
    with ``tsne``, t-SNE from scikit-learn) and, for D = 2, the manifold: decoded images
    on a ``grid``×``grid`` lattice of prior quantiles Φ⁻¹(p), p evenly in (0, 1).

    Writes ``latent_map.png`` (+ ``latent_tsne.png``, ``manifold.png``) and ``latent_map.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import norm
    from sklearn.decomposition import PCA

    folder = output_folder(run_dir, out)
    if grid < 2:
        raise TfvaeError(f"--grid must be at least 2, got {grid}")
    model, cfg, data, images = test_split(run_dir, checkpoint)
    images, labels = images[:max_points], (None if data.test_labels is None else data.test_labels[:max_points])
    z = posterior_means(model, images)
    result = {"latent_dim": int(z.shape[1]), "points": int(len(z))}
    projections = {}
    if z.shape[1] == 2:
        projections["latent_map.png"] = (z, "posterior means (z₁, z₂)")
    else:
        pca = PCA(n_components=2, random_state=0).fit(z)
        projections["latent_map.png"] = (pca.transform(z), "PCA of posterior means")
        result["pca_explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
        if tsne:
            from sklearn.manifold import TSNE

            projections["latent_tsne.png"] = (TSNE(n_components=2, random_state=0, init="pca").fit_transform(z),
                                              "t-SNE of posterior means")
    for name, (xy, title) in projections.items():
        fig, ax = plt.subplots(figsize=(6.5, 6))
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels if labels is not None else "k", cmap="tab10", s=3, alpha=0.7)
        if labels is not None:
            names = cfg.meta.get("class_names") or [str(i) for i in range(int(labels.max()) + 1)]
            ax.legend(sc.legend_elements()[0], names, fontsize=7, markerscale=1.2, loc="best")
        ax.set_title(f"{title}, {len(xy)} test images", fontsize=10)
        fig.tight_layout()
        plots.save_figure(fig, folder / name)
    if z.shape[1] == 2:
        q = norm.ppf(np.linspace(0.05, 0.95, grid))
        lattice = np.array([[x, y] for y in q[::-1] for x in q], dtype=np.float32)
        decoded = model.decode_mean(tf.constant(lattice)).numpy()
        plots.save_image_grid(decoded, folder / "manifold.png", rows=grid,
                              title="E[x|z] on prior quantiles Φ⁻¹(0.05 … 0.95)")
        result["manifold_shape"] = [grid, grid] + list(decoded.shape[1:])
    result["figures"] = sorted(projections) + (["manifold.png"] if z.shape[1] == 2 else [])
    atomic_write_text(folder / "latent_map.json", json_text(result))
    return result


def classify(run_dir, label_counts=(100, 1000, "all"), seeds: int = 5, out=None, checkpoint="best") -> dict:
    """Few-label classification on the encoder's posterior means, against raw pixels and
    PCA features of the same size: logistic regression and k-NN (k = 5), each
    trained on ``n`` labelled training images (a random subset per seed; all of them once
    for ``"all"``) and scored on the test split. Mean ± std of test accuracy over seeds.

    Raises:
        TfvaeError: a count larger than the training set, or a dataset without labels.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folder = output_folder(run_dir, out)
    model, cfg = load_model(run_dir, checkpoint)
    data = run_dataset(run_dir, cfg)
    if data.train_labels is None or data.test_labels is None:
        raise TfvaeError(f"dataset {cfg.data.dataset!r} has no labels to classify")
    n_train = len(data.train)
    counts = []
    for c in label_counts:
        if c == "all":
            counts.append("all")
        elif not isinstance(c, int) or c < 10:
            raise TfvaeError(f"--labels: each count must be an integer ≥ 10 or 'all', got {c!r}")
        elif c > n_train:
            raise TfvaeError(f"--labels {c} is larger than the training set ({n_train} images)")
        else:
            counts.append(c)
    # Features: the same held-out binarization for train and test, so only the labels vary.
    x_train = binarize_fixed(data.train, cfg.data.binarization, cfg.data.binarization_seed)
    x_test = binarize_fixed(data.test, cfg.data.binarization, cfg.data.binarization_seed)
    d = model.latent_dim
    features = {
        "encoder mean": (posterior_means(model, x_train), posterior_means(model, x_test)),
        "raw pixels": (x_train.reshape(n_train, -1), x_test.reshape(len(x_test), -1)),
    }
    pca = PCA(n_components=d, random_state=0).fit(features["raw pixels"][0])
    features[f"PCA ({d})"] = (pca.transform(features["raw pixels"][0]), pca.transform(features["raw pixels"][1]))
    classifiers = {
        "logistic regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "k-NN (k=5)": lambda: KNeighborsClassifier(n_neighbors=5),
    }
    rows = []
    start = time.perf_counter()
    for feature_name, (f_train, f_test) in features.items():
        for clf_name, make in classifiers.items():
            for count in counts:
                accs = []
                for seed in (range(seeds) if count != "all" else [0]):
                    idx = (np.arange(n_train) if count == "all"
                           else np.random.default_rng(seed).choice(n_train, count, replace=False))
                    clf = make().fit(f_train[idx], data.train_labels[idx])
                    accs.append(float((clf.predict(f_test) == data.test_labels).mean()))
                rows.append({"features": feature_name, "classifier": clf_name, "labels": count,
                             "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
                             "seeds": len(accs)})
    result = {"protocol": {"split": "test", "test_images": int(len(x_test)), "train_pool": n_train,
                           "seeds": seeds, "label_subsets": "numpy default_rng(seed).choice without replacement"},
              "rows": rows, "seconds": time.perf_counter() - start}
    atomic_write_text(folder / "classify.json", json_text(result))
    return result


def format_classify(result: dict) -> str:
    """The accuracy table as Markdown."""
    counts = []
    for r in result["rows"]:
        if r["labels"] not in counts:
            counts.append(r["labels"])
    lines = ["| features | classifier | " + " | ".join(f"{c} labels" for c in counts) + " |",
             "| --- | --- | " + " | ".join("---" for _ in counts) + " |"]
    keys = []
    for r in result["rows"]:
        if (r["features"], r["classifier"]) not in keys:
            keys.append((r["features"], r["classifier"]))
    for f, c in keys:
        cells = []
        for n in counts:
            r = next(r for r in result["rows"] if (r["features"], r["classifier"], r["labels"]) == (f, c, n))
            cells.append(f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}%" if r["seeds"] > 1
                         else f"{100 * r['accuracy_mean']:.1f}%")
        lines.append(f"| {f} | {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def traverse(run_dir, out=None, dims: int = 10, steps: int = 9, limit: float = 3.0, image: int = 0,
             checkpoint: str = "best") -> dict:
    """Latent traversal: decode while one latent dimension sweeps −limit…limit and the
    others stay at the posterior mean of test image ``image`` (Higgins et al. 2017, fig. 1).

    Rows are the ``dims`` dimensions with the largest average KL (most informative first;
    for a learned prior, the largest variance of the posterior means; for a hierarchical
    VAE, dimensions of the top group's noise with the lower groups at their posterior
    means); columns the sweep.
    A conditional VAE keeps the test image's label. Writes ``traverse.png`` and
    ``traverse.json`` (dimensions, their KL or activity, the sweep values).

    Raises:
        TfvaeError: ``dims`` or ``steps`` < 1 (< 2 for steps), ``limit`` ≤ 0, ``image``
            outside the test split, or a PCA run.
    """
    if dims < 1:
        raise TfvaeError(f"--dims must be a positive integer, got {dims}")
    if steps < 2:
        raise TfvaeError(f"--steps must be at least 2, got {steps}")
    if not limit > 0:
        raise TfvaeError(f"--limit must be positive, got {limit}")
    folder = output_folder(run_dir, out)
    model, cfg, data, images = test_split(run_dir, checkpoint)
    family = registry.require(cfg, "encoder", "traverse", "a trained encoder")
    _check_index("--image", image, len(images))
    n = min(len(images), 2000)
    onehot = None
    if model.conditional:
        onehot = np.eye(model.num_classes, dtype=np.float32)[data.test_labels[:n]]
    loc, scale = (a.astype(np.float64) for a in posterior_parameters(model, images[:n], 500, onehot))
    if cfg.model.prior == "standard" and family.variational:
        score = np.mean(0.5 * (loc**2 + scale**2 - 1 - np.log(scale**2)), axis=0)
        measure = "KL(q(z_d|x) ‖ N(0, 1)) averaged over test images, nats"
    else:
        score = np.var(loc, axis=0)
        measure = "variance of the posterior mean over test images"
    if family.latent_groups:  # the top group's dimensions: the lower groups refine what it decides
        top = cfg.model.group_dims[0]
        score = score[:top]
        measure += " (top latent group of the hierarchy; noise space, mean path)"
    order = np.argsort(-score)[:dims]
    values = np.linspace(-limit, limit, steps)
    z = sweep_codes(loc[image], order, values)
    y = None if onehot is None else np.repeat(onehot[image:image + 1], len(z), axis=0)
    decoded = np.asarray(model.decode_mean(tf.constant(z.astype(np.float32)), y))
    plots.save_image_grid(decoded, folder / "traverse.png", rows=len(order),
                          row_labels=[f"z{d}  {score[d]:.2f}" for d in order],
                          title=f"traversal: z_d from {-limit:g} to {limit:g}, others at test image {image}'s "
                                f"posterior mean (β = {cfg.train.beta:g})")
    result = {"dimensions": [int(d) for d in order], "scores": [float(score[d]) for d in order], "measure": measure,
              "values": [float(v) for v in values], "image": image, "beta": cfg.train.beta,
              "figure": str(folder / "traverse.png")}
    atomic_write_text(folder / "traverse.json", json_text(result))
    return result

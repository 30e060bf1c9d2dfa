"""Out-of-distribution scoring and inpainting with a trained VAE.

Anomaly scores are −ELBO (and, with ``iw_samples`` > 0, the importance-weighted NLL) in
nats per image: higher means "less likely under the model". A likelihood can rank an
outlier as *more* likely than the data (blank images; MNIST under a Fashion-MNIST model:
Nalisnick et al. 2019), so each score also has a typicality version, |score − its mean on
the validation split|, which flags inputs that are too likely as well as too unlikely
(the idea of Nalisnick et al. 2019's typicality test, per image). AUROC and AUPRC treat
the other set as the positive class. Inpainting iterates encode → decode
while clamping the observed pixels (Rezende et al. 2014, section 5.2, with posterior
means and likelihood means in place of samples, so the result is deterministic).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import tensorflow as tf

from . import plots
from .config import atomic_write_text, json_text
from .data import binarize_fixed, load_dataset
from .errors import TfvaeError
from .evaluate import evaluate_images
from .codes import posterior_means
from .latent import output_folder, test_split

CORRUPTIONS = ("noise", "blank", "invert")


def corrupt(images_u8: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """Corrupted copies of uint8 images [N, H, W, C] (before binarization).

    ``noise``: each pixel replaced by a uniform random grey level with probability 0.5;
    ``blank``: all pixels 0; ``invert``: 255 − x.
    """
    if kind == "blank":
        return np.zeros_like(images_u8)
    if kind == "invert":
        return 255 - images_u8
    if kind == "noise":
        rng = np.random.default_rng(seed)
        noise = rng.integers(0, 256, images_u8.shape, dtype=np.uint8)
        return np.where(rng.random(images_u8.shape) < 0.5, noise, images_u8)
    raise TfvaeError(f"--corrupt must be one of {', '.join(CORRUPTIONS)}, got {kind!r}")


def anomaly(run_dir, ood=None, corruption=None, iw_samples: int = 0, max_examples=None, out=None,
            checkpoint="best", data_dir=None, bins: int = 60) -> dict:
    """Score the run's test images against another set and report AUROC / AUPRC.

    The other set is the test split of dataset ``ood`` (binarized the same way); the
    validation split when ``ood`` is the training dataset itself (a second held-out sample
    of the same distribution, so AUROC ≈ 0.5); or, with ``corruption``, corrupted copies of
    the test images. Writes ``anomaly_<name>.png`` (score histograms) and ``.json``.

    Raises:
        TfvaeError: neither or both of ``ood`` / ``corruption``; an OOD dataset whose
            image shape differs from the model's; an unknown corruption.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if (ood is None) == (corruption is None):
        raise TfvaeError("give exactly one of --ood DATASET or --corrupt noise|blank|invert")
    if iw_samples < 0:
        raise TfvaeError(f"--iw-samples must be ≥ 0, got {iw_samples}")
    if max_examples is not None and max_examples < 1:
        raise TfvaeError(f"--max-examples must be a positive integer, got {max_examples}")
    folder = output_folder(run_dir, out)
    model, cfg, data, inliers = test_split(run_dir, checkpoint)
    raw_in = data.test[:max_examples]
    inliers = inliers[:max_examples]
    mode, seed = cfg.data.binarization, cfg.data.binarization_seed
    if corruption is not None:
        name = f"corrupt-{corruption}"
        others = binarize_fixed(corrupt(raw_in, corruption), mode, seed)
    elif ood == cfg.data.dataset and not cfg.data.idx_dir:
        name = f"ood-{ood}-validation"
        others = binarize_fixed(data.validation[:max_examples], mode, seed)
    else:
        name = f"ood-{ood}"
        other_cfg = replace(cfg.data, dataset=ood, idx_dir=None, image_dir=None, image_size=None,
                            data_dir=data_dir or cfg.data.data_dir, validation_size=0, max_train_examples=None)
        try:
            other = load_dataset(other_cfg, need_test=True)
        except TfvaeError as exc:  # its messages speak of --dataset: here the option is --ood
            raise type(exc)(f"--ood {ood}: {str(exc).replace('--dataset: ', '')}") from None
        if other.image_shape != tuple(cfg.model.image_shape):
            raise TfvaeError(f"--ood {ood}: images are {other.image_shape}, the model expects "
                             f"{tuple(cfg.model.image_shape)}")
        others = binarize_fixed(other.test[:max_examples], mode, seed)

    k = max(1, iw_samples)
    scores_in = evaluate_images(model, inliers, iw_samples=k, seed=0, progress=False)
    scores_out = evaluate_images(model, others, iw_samples=k, seed=1, progress=False)
    reference = evaluate_images(model, binarize_fixed(data.validation[:max_examples or 2000], mode, seed),
                                iw_samples=k, seed=2, progress=False)
    for key in ("neg_elbo", "nll"):
        centre = float(np.mean(reference[key]))
        scores_in[f"typicality_{key}"] = np.abs(scores_in[key] - centre)
        scores_out[f"typicality_{key}"] = np.abs(scores_out[key] - centre)
    labels = np.concatenate([np.zeros(len(inliers)), np.ones(len(others))])
    result = {"protocol": {"in_distribution": f"{cfg.data.dataset} test", "other": name,
                           "n_in": int(len(inliers)), "n_other": int(len(others)), "binarization": mode,
                           "binarization_seed": seed, "positive_class": "other (higher score = more anomalous)",
                           "samples": k, "typicality_reference": "validation split mean score"},
              "scores": {}}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [("neg_elbo", "−ELBO"), ("typicality_neg_elbo", "|−ELBO − validation mean|")]
    if iw_samples > 0:
        kinds += [("nll", f"NLL (K={k})"), ("typicality_nll", f"|NLL − validation mean| (K={k})")]
    rows = 1 if len(kinds) <= 2 else 2
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.8 * rows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, kinds):
        s = np.concatenate([scores_in[key], scores_out[key]])
        result["scores"][key] = {"auroc": float(roc_auc_score(labels, s)),
                                 "auprc": float(average_precision_score(labels, s)),
                                 "mean_in": float(np.mean(scores_in[key])), "mean_other": float(np.mean(scores_out[key]))}
        edges = np.histogram_bin_edges(s, bins=bins)
        if not key.startswith("typicality") and s.min() > 0 and s.max() / s.min() > 20:  # log axis
            edges = np.geomspace(s.min(), s.max(), bins + 1)
            ax.set_xscale("log")
        ax.hist(scores_in[key], bins=edges, alpha=0.6, density=True, label=f"{cfg.data.dataset} test")
        ax.hist(scores_out[key], bins=edges, alpha=0.6, density=True, label=name)
        ax.set_xlabel(f"{label} (nats per image)")
        ax.set_title(f"AUROC {result['scores'][key]['auroc']:.3f}, AUPRC {result['scores'][key]['auprc']:.3f}",
                     fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    from .plots import save_figure

    save_figure(fig, folder / f"anomaly_{name}.png")
    result["figure"] = f"anomaly_{name}.png"
    atomic_write_text(folder / f"anomaly_{name}.json", json_text(result))
    return result


def parse_mask(spec: str, shape, seed: int = 0) -> np.ndarray:
    """Missing-pixel mask [H, W, C] (1 = missing) from ``top``, ``bottom``, ``left``,
    ``right`` (half the image) or ``random:P`` (each pixel missing with probability P).

    Raises:
        TfvaeError: anything else, P outside (0, 1), or a mask with no missing pixel (the
            errors on missing pixels would be 0/0).
    """
    h, w, c = shape
    mask = np.zeros((h, w, c), np.float32)
    if spec == "top":
        mask[: h // 2] = 1
    elif spec == "bottom":
        mask[h // 2:] = 1
    elif spec == "left":
        mask[:, : w // 2] = 1
    elif spec == "right":
        mask[:, w // 2:] = 1
    else:
        m = re.fullmatch(r"random:([0-9]*\.?[0-9]*)", spec or "")
        try:
            p = float(m.group(1)) if m else None
        except ValueError:  # "random:." matches the pattern but is no number
            p = None
        if p is None or not 0 < p < 1:
            raise TfvaeError(f"--mask must be top, bottom, left, right or random:P with 0 < P < 1, got {spec!r}")
        mask[:] = (np.random.default_rng(seed).random((h, w, 1)) < p).astype(np.float32)
    if not mask.any():
        raise TfvaeError(f"--mask {spec} leaves no pixel of a {h}×{w} image missing; there is nothing to inpaint "
                         f"(use a larger P or another mask)")
    return mask


def inpaint(run_dir, mask_spec: str = "bottom", n: int = 8, steps: int = 20, out=None, checkpoint="best") -> dict:
    """Fill the missing pixels of the first ``n`` test images.

    x₀ = observed pixels, missing ones set to the mean training image; then ``steps``
    times: x ← m ⊙ E[x | z = E_q[z|x]] + (1 − m) ⊙ x_observed. Errors on the missing
    pixels (mean squared error and binary cross-entropy per image, against the true
    binarized pixels) for the completion and for the mean-image baseline.

    Writes ``inpaint_<mask>.png`` (rows: originals, masked inputs, completions) and ``.json``.
    """
    if n < 1:
        raise TfvaeError(f"-n must be a positive integer, got {n}")
    if steps < 1:
        raise TfvaeError(f"--steps must be a positive integer, got {steps}")
    folder = output_folder(run_dir, out)
    model, cfg, data, images = test_split(run_dir, checkpoint)
    mask = parse_mask(mask_spec, images.shape[1:])
    truth = images[:n]
    mean_image = data.train.astype(np.float32).mean(axis=0) / 255.0
    x = truth * (1 - mask) + mean_image * mask
    for _ in range(steps):
        z = posterior_means(model, x)
        x = truth * (1 - mask) + model.decode_mean(tf.constant(z)).numpy() * mask

    def errors(pred):
        p = np.clip(pred, 1e-6, 1 - 1e-6)
        missing = mask.sum()
        se = ((pred - truth) ** 2 * mask).reshape(len(truth), -1).sum(1)
        bce = (-(truth * np.log(p) + (1 - truth) * np.log(1 - p)) * mask).reshape(len(truth), -1).sum(1)
        return {"mse_per_missing_pixel": float(se.mean() / missing), "bce_nats_per_image": float(bce.mean())}

    baseline = truth * (1 - mask) + mean_image * mask
    masked_view = truth * (1 - mask) + 0.5 * mask
    label = mask_spec.replace(":", "")
    plots.save_image_grid(np.concatenate([truth, masked_view, x]), folder / f"inpaint_{label}.png", rows=3,
                          title=f"mask {mask_spec} (grey = missing), {steps} encode → decode steps",
                          row_labels=["test", "masked", "completed"])
    result = {"mask": mask_spec, "images": int(n), "steps": steps, "missing_pixels": int(mask.sum()),
              "completion": errors(x), "mean_image_baseline": errors(baseline),
              "observed_pixels_unchanged": bool(np.array_equal(x * (1 - mask), truth * (1 - mask)))}
    atomic_write_text(folder / f"inpaint_{label}.json", json_text(result))
    return result

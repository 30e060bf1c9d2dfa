"""Disentanglement metrics on data with known generative factors (``cli.py disentanglement``).

Four scores of how a code z (the posterior mean, as in Locatello et al. 2019) lines up with
the factors v that rendered each image; each is 1 for a perfect one-factor-per-dimension
code. They follow disentanglement_lib (Locatello et al. 2019), whose protocols are the
field's reference, with sample sizes given by the caller:

* **MIG** (Chen et al. 2018, eq. 6): for each factor v_k, the gap between the two largest
  mutual informations I(z_j; v_k), divided by the entropy H(v_k); averaged over factors.
  Codes are discretized into ``bins`` equal-width bins per dimension.
* **DCI** (Eastwood & Williams 2018): one gradient-boosted-trees classifier per factor
  predicts v_k from z (scikit-learn's ``GradientBoostingClassifier``); its feature
  importances form R [D, K]. Disentanglement = Σ_j ρ_j (1 − H_K(P_j·)), with P_jk =
  R_jk / Σ_k R_jk and ρ_j = Σ_k R_jk / Σ R (their eq. 2); completeness = Σ_k ρ_k (1 −
  H_D(P̃_·k)) with P̃ normalized over dimensions and ρ_k = Σ_j R_jk / Σ R (eq. 3);
  informativeness = the classifiers' accuracy on held-out points (disentanglement_lib's).
  Entropies H_K, H_D are in base K and D, so each term lies in [0, 1].
* **FactorVAE score** (Kim & Mnih 2018, section 3, "A new metric for disentanglement"):
  for a vote, fix one factor k, draw a batch of images with the others random, normalize
  the codes by their standard deviation over the data, and vote (argmin_j Var(z_j), k); a
  majority-vote classifier from dimension to factor is fit on training votes, and the
  score is its accuracy on evaluation votes. Dimensions whose standard deviation over the
  data is under 0.05 are left out ("collapsed", Kim & Mnih; disentanglement_lib's
  ``prune_dims.threshold = 0.05`` in its study's configuration).
* **β-VAE score** (Higgins et al. 2017, section 3 and appendix A.4): for a point, fix one
  factor k in pairs of images (x1, x2) of a batch, and use the mean |z(x1) − z(x2)| over
  the batch as the feature; a logistic regression predicts k, and the score is its
  held-out accuracy.

The default sample sizes are those of disentanglement_lib's study (Locatello et al. 2019,
``unsupervised_study_v1`` metric configurations): FactorVAE and β-VAE scores from 10,000
training and 5,000 evaluation votes (points) of 64 images (pairs) each, the FactorVAE
score's standard deviations from 10,000 images; MIG from 10,000 points in 20 bins.

Every draw comes from one ``numpy.random.default_rng(seed)``, so a run's figures are
reproducible from the seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import atomic_write_text, json_text
from .errors import TfvaeError
from .models import registry

FACTOR_DATASETS = ("dsprites",)  # datasets whose factors tfvae knows


@dataclass
class Protocol:
    """Sample sizes of the four metrics (the defaults of ``cli.py disentanglement``).

    Attributes:
        seed: seed of every draw (factors, batches, classifiers).
        points: MIG's points, and DCI's training points (DCI's test points: half of it).
        bins: MIG's bins per code dimension.
        votes: training votes / points of the FactorVAE and β-VAE scores (evaluation: half,
            so 10,000 and 5,000 by default, as disentanglement_lib's study).
        batch_size: images per vote (FactorVAE) and image pairs per point (β-VAE score).
        variance_points: images for the codes' standard deviation (FactorVAE score).
        prune_std: the FactorVAE score leaves out dimensions whose standard deviation over
            the data is below this (disentanglement_lib's study: 0.05).
    """

    seed: int = 0
    points: int = 10000
    bins: int = 20
    votes: int = 10000
    batch_size: int = 64
    variance_points: int = 10000
    prune_std: float = 0.05


# ---- metrics on codes and factors ------------------------------------------------------
def discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each column of codes [N, D] into ``bins`` equal-width bins over its range: int64 [N, D]."""
    codes = np.asarray(codes, np.float64)
    out = np.zeros(codes.shape, np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins)
        out[:, j] = np.digitize(codes[:, j], edges[1:-1])
    return out


def mutual_information(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """I(z_j; v_k) in nats from the empirical joint distribution: float64 [D, K]."""
    from sklearn.metrics import mutual_info_score

    d, k = discrete_codes.shape[1], factors.shape[1]
    return np.array([[mutual_info_score(factors[:, b], discrete_codes[:, a]) for b in range(k)] for a in range(d)])


def entropy(factors: np.ndarray) -> np.ndarray:
    """H(v_k) in nats of each column of int factors [N, K] (``scipy.stats.entropy`` of its
    value counts): float64 [K]."""
    from scipy.stats import entropy as scipy_entropy

    return np.array([float(scipy_entropy(np.unique(col, return_counts=True)[1])) for col in np.asarray(factors).T])


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> dict:
    """Mutual information gap (Chen et al. 2018, eq. 6).

    Args:
        codes: float [N, D], D ≥ 2. factors: int [N, K], each column with ≥ 2 values.

    Returns:
        ``mig`` (mean over factors, in [0, 1]), ``per_factor`` [K], ``mutual_information``
        [D, K] nats, ``factor_entropy`` [K] nats.

    Raises:
        ValueError: fewer than 2 code dimensions, or a constant factor.
    """
    codes, factors = np.asarray(codes), np.asarray(factors)
    if codes.shape[1] < 2:
        raise ValueError("MIG needs at least 2 code dimensions")
    h = entropy(factors)
    if (h <= 0).any():
        raise ValueError("MIG needs every factor to vary")
    mi = mutual_information(discretize(codes, bins), factors)
    top = np.sort(mi, axis=0)[::-1]
    gaps = (top[0] - top[1]) / h
    return {"mig": float(gaps.mean()), "per_factor": gaps.tolist(), "mutual_information": mi.tolist(),
            "factor_entropy": h.tolist()}


def _normalized_entropy(p: np.ndarray, axis: int) -> np.ndarray:
    """Entropy along ``axis`` of non-negative weights, normalized to sum 1, in base n (n the
    axis length): in [0, 1]. An all-zero row has entropy 1 (no information)."""
    n = p.shape[axis]
    total = p.sum(axis=axis, keepdims=True)
    q = np.where(total > 0, p / np.where(total > 0, total, 1), 1.0 / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(q > 0, q * np.log(q), 0.0)
    return -terms.sum(axis=axis) / math.log(n)


def dci_from_importance(importance: np.ndarray) -> tuple:
    """(disentanglement, completeness) from an importance matrix R [D, K] ≥ 0 (Eastwood &
    Williams 2018, eqs. 1–3), each in [0, 1]."""
    r = np.asarray(importance, np.float64)
    total = r.sum()
    if total <= 0:
        return 0.0, 0.0
    disentanglement = float(((1 - _normalized_entropy(r, axis=1)) * r.sum(axis=1) / total).sum()) if r.shape[1] > 1 \
        else 1.0
    completeness = float(((1 - _normalized_entropy(r, axis=0)) * r.sum(axis=0) / total).sum()) if r.shape[0] > 1 \
        else 1.0
    return disentanglement, completeness


def dci(codes_train, factors_train, codes_test, factors_test, seed: int = 0) -> dict:
    """DCI (Eastwood & Williams 2018) with gradient-boosted trees, as disentanglement_lib.

    Args:
        codes_*: float [N, D]; factors_*: int [N, K].

    Returns:
        ``disentanglement``, ``completeness``, ``informativeness`` (mean held-out accuracy),
        ``importance`` [D, K], ``train_accuracy`` [K], ``test_accuracy`` [K].
    """
    from sklearn.ensemble import GradientBoostingClassifier

    codes_train, codes_test = np.asarray(codes_train), np.asarray(codes_test)
    factors_train, factors_test = np.asarray(factors_train), np.asarray(factors_test)
    d, k = codes_train.shape[1], factors_train.shape[1]
    importance = np.zeros((d, k))
    train_acc, test_acc = [], []
    for b in range(k):
        model = GradientBoostingClassifier(random_state=seed)
        model.fit(codes_train, factors_train[:, b])
        importance[:, b] = np.abs(model.feature_importances_)
        train_acc.append(float(np.mean(model.predict(codes_train) == factors_train[:, b])))
        test_acc.append(float(np.mean(model.predict(codes_test) == factors_test[:, b])))
    dis, com = dci_from_importance(importance)
    return {"disentanglement": dis, "completeness": com, "informativeness": float(np.mean(test_acc)),
            "importance": importance.tolist(), "train_accuracy": train_acc, "test_accuracy": test_acc}


# ---- metrics that draw their own images ------------------------------------------------
class FactorData:
    """Images of known factors: ``sizes`` (values per factor), ``names``,
    ``sample(n, rng)`` -> int factors [n, K], ``images(factors)`` -> float32 [n, H, W, C] in [0, 1]."""

    def __init__(self, names, sizes, sample, images):
        self.names, self.sizes, self.sample, self.images = tuple(names), tuple(sizes), sample, images


def dsprites_data() -> FactorData:
    """The dSprites-style factors of ``tfvae.dsprites`` (images binary, as trained on)."""
    from . import dsprites

    return FactorData(dsprites.FACTOR_NAMES, dsprites.FACTOR_SIZES, dsprites.sample_factors,
                      lambda f: dsprites.render(f).astype(np.float32) / 255.0)


def factor_vae_score(encode, data: FactorData, rng, votes: int, batch_size: int = 64,
                     variance_points: int = 10000, prune_std: float = 0.05) -> dict:
    """FactorVAE score (Kim & Mnih 2018, section 3): majority-vote accuracy on ``votes // 2``
    evaluation votes of a classifier fit on ``votes`` training votes; dimensions whose
    standard deviation over ``variance_points`` images is below ``prune_std`` are left out.

    Args:
        encode: images float32 [n, H, W, C] -> codes float [n, D].

    Returns:
        ``score`` (evaluation accuracy), ``train_accuracy``, ``active_dimensions`` (those with
        standard deviation ≥ ``prune_std``), ``votes`` [D, K] (the training votes).
    """
    k = len(data.sizes)
    variance = np.var(encode(data.images(data.sample(variance_points, rng))), axis=0, ddof=1)
    active = np.sqrt(variance) >= max(prune_std, 0.0) if prune_std > 0 else variance > 0
    if not active.any():
        return {"score": 0.0, "train_accuracy": 0.0, "active_dimensions": [], "votes": []}

    def vote_matrix(n):
        counts = np.zeros((len(variance), k), np.int64)
        for _ in range(n):
            factor = rng.integers(k)
            f = data.sample(batch_size, rng)
            f[:, factor] = f[0, factor]
            local = np.var(encode(data.images(f)), axis=0, ddof=1) / np.where(active, variance, 1)
            counts[np.argmin(np.where(active, local, np.inf)), factor] += 1
        return counts

    train = vote_matrix(votes)
    classifier = np.argmax(train, axis=1)
    evaluation = vote_matrix(max(1, votes // 2))
    train_acc = train.max(axis=1).sum() / train.sum()
    eval_acc = evaluation[np.arange(len(classifier)), classifier].sum() / evaluation.sum()
    return {"score": float(eval_acc), "train_accuracy": float(train_acc),
            "active_dimensions": np.flatnonzero(active).tolist(), "votes": train.tolist()}


def beta_vae_score(encode, data: FactorData, rng, points: int, batch_size: int = 64, seed: int = 0) -> dict:
    """β-VAE score (Higgins et al. 2017, section 3): held-out accuracy of a logistic regression
    (scikit-learn) that names the fixed factor from mean |z(x1) − z(x2)| over a batch of pairs.

    Returns:
        ``score`` (accuracy on ``points // 2`` evaluation points) and ``train_accuracy``.
    """
    from sklearn.linear_model import LogisticRegression

    k = len(data.sizes)

    def features(n):
        x, y = [], []
        for _ in range(n):
            factor = rng.integers(k)
            f1, f2 = data.sample(batch_size, rng), data.sample(batch_size, rng)
            f2[:, factor] = f1[:, factor]
            codes = encode(data.images(np.concatenate([f1, f2])))
            x.append(np.mean(np.abs(codes[:batch_size] - codes[batch_size:]), axis=0))
            y.append(factor)
        return np.array(x), np.array(y)

    x_train, y_train = features(points)
    x_eval, y_eval = features(max(1, points // 2))
    model = LogisticRegression(max_iter=2000, random_state=seed).fit(x_train, y_train)
    return {"score": float(model.score(x_eval, y_eval)), "train_accuracy": float(model.score(x_train, y_train))}


def all_metrics(encode, data: FactorData, protocol: Protocol) -> dict:
    """MIG, DCI, FactorVAE score and β-VAE score of ``encode`` on ``data`` (see the module
    docstring), with the protocol and the seconds each took."""
    rng = np.random.default_rng(protocol.seed)
    out, seconds = {}, {}
    start = time.perf_counter()
    factors = data.sample(protocol.points, rng)
    codes = encode(data.images(factors))
    out["mig"] = mig(codes, factors, protocol.bins)
    seconds["mig"] = time.perf_counter() - start
    start = time.perf_counter()
    test_factors = data.sample(max(2, protocol.points // 2), rng)
    out["dci"] = dci(codes, factors, encode(data.images(test_factors)), test_factors, seed=protocol.seed)
    seconds["dci"] = time.perf_counter() - start
    start = time.perf_counter()
    out["factor_vae"] = factor_vae_score(encode, data, rng, protocol.votes, protocol.batch_size,
                                         protocol.variance_points, protocol.prune_std)
    seconds["factor_vae"] = time.perf_counter() - start
    start = time.perf_counter()
    out["beta_vae"] = beta_vae_score(encode, data, rng, protocol.votes, protocol.batch_size, protocol.seed)
    seconds["beta_vae"] = time.perf_counter() - start
    out["seconds"] = seconds
    return out


# ---- a run ---------------------------------------------------------------------------
def check_run(cfg, run_dir) -> None:
    """Raises TfvaeError unless the run's data has known factors and the model has an encoder."""
    if cfg.data.image_dir or cfg.data.idx_dir or cfg.data.dataset not in FACTOR_DATASETS:
        source = cfg.data.image_dir or cfg.data.idx_dir or cfg.data.dataset
        raise TfvaeError(f"disentanglement needs a run trained on data with known factors (--dataset "
                         f"{' or '.join(FACTOR_DATASETS)}); {run_dir} was trained on {source}")
    able = registry.with_capability(encoder=True, conditional=False, latent_groups=False)
    if cfg.model.model not in able:
        raise TfvaeError(f"disentanglement scores the codes of --model {' or '.join(able)} (an unconditional "
                         f"encoder with one latent group); {run_dir} is --model {cfg.model.model}")


def evaluate_run(run_dir, protocol: Protocol | None = None, checkpoint: str = "best", traverse_dims: int = 6,
                 write: bool = True) -> dict:
    """Score a run's posterior means, write ``disentanglement.json`` and
    ``figures/disentanglement_traverse.png`` (the ``traverse_dims`` dimensions with the largest
    normalized mutual information, each row labelled by the factor it captures best).

    Returns:
        The dict written to ``disentanglement.json``: ``metrics`` (MIG, DCI, FactorVAE, β-VAE
        score), ``dimensions`` (per code dimension: best factor and I/H), the protocol,
        the reconstruction term on the MIG points (nats per image), seconds.

    Raises:
        TfvaeError: not a run, data without known factors, a model without an encoder.
    """
    import tensorflow as tf

    from . import plots
    from .codes import posterior_means, posterior_parameters
    from .latent import sweep_codes
    from .rundir import load_model, read_config

    protocol = protocol or Protocol()
    run_dir = Path(run_dir)
    check_run(read_config(run_dir), run_dir)
    model, cfg = load_model(run_dir, checkpoint)
    data = dsprites_data()

    def encode(images):
        return posterior_means(model, images, 500).astype(np.float64)

    start = time.perf_counter()
    metrics = all_metrics(encode, data, protocol)
    rng = np.random.default_rng(protocol.seed + 1)
    recon_images = data.images(data.sample(2000, rng))
    loc, scale = posterior_parameters(model, recon_images, 500)
    reconstruction = float(-tf.reduce_mean(model.likelihood(tf.constant(loc)).log_prob(tf.constant(recon_images))))
    aggregate = None
    if registry.of(cfg).posterior_scale:  # an autoencoder has no posterior scale
        from .models.btcvae import total_correlation

        aggregate = total_correlation(loc, scale, seed=protocol.seed)

    mi = np.array(metrics["mig"]["mutual_information"])
    normalized = mi / np.array(metrics["mig"]["factor_entropy"])[None, :]
    best = np.argmax(normalized, axis=1)
    dims = [{"dimension": j, "factor": data.names[best[j]], "normalized_mi": float(normalized[j, best[j]])}
            for j in range(len(best))]
    order = np.argsort(-normalized.max(axis=1))[:traverse_dims]
    base_factors = np.array([[0, 3, 0, 16, 16]])  # a mid-size square in the centre
    base = encode(data.images(base_factors))[0]
    zs = sweep_codes(base, order, base[order][:, None] + np.linspace(-2.5, 2.5, 9))
    decoded = np.asarray(model.decode_mean(tf.constant(zs.astype(np.float32))))
    figure = run_dir / "figures" / "disentanglement_traverse.png"
    result = {
        "run": str(run_dir), "model": cfg.model.model, "beta": cfg.train.beta, "latent_dim": cfg.model.latent_dim,
        "metrics": {"mig": metrics["mig"]["mig"], "dci_disentanglement": metrics["dci"]["disentanglement"],
                    "dci_completeness": metrics["dci"]["completeness"],
                    "dci_informativeness": metrics["dci"]["informativeness"],
                    "factor_vae_score": metrics["factor_vae"]["score"], "beta_vae_score": metrics["beta_vae"]["score"]},
        "reconstruction": reconstruction,
        "aggregate_posterior": aggregate,
        "details": metrics, "dimensions": dims, "factors": {"names": list(data.names), "sizes": list(data.sizes)},
        "protocol": {**asdict(protocol), "checkpoint": checkpoint, "codes": "posterior means E_q[z|x]",
                     "reconstruction": "−log p(x|z = posterior mean), nats per image, mean over 2,000 images "
                                       f"drawn with seed {protocol.seed + 1}",
                     "aggregate_posterior": "the same 2,000 images stand for the data: q(z) = mean of their "
                                            "posteriors, one draw of z per image",
                     "data": "tfvae.dsprites re-rendering, factors drawn uniformly"},
        "traversal": {"figure": str(figure), "dimensions": [int(j) for j in order],
                      "values": "posterior mean of a centred mid-size square + linspace(−2.5, 2.5, 9)"},
        "seconds": time.perf_counter() - start,
    }
    if write:
        figure.parent.mkdir(exist_ok=True)
        plots.save_image_grid(decoded, figure, rows=len(order),
                              row_labels=[f"z{j} {data.names[best[j]]} {normalized[j, best[j]]:.2f}" for j in order],
                              title=f"{cfg.model.model} β = {cfg.train.beta:g}: z_j − 2.5 … + 2.5 (label: factor, I/H)")
        atomic_write_text(run_dir / "disentanglement.json", json_text(result))
    return result


def format_result(result: dict) -> str:
    """The four metrics and the per-dimension factors as lines of text."""
    m = result["metrics"]
    lines = [f"MIG {m['mig']:.3f}   DCI disentanglement {m['dci_disentanglement']:.3f}  completeness "
             f"{m['dci_completeness']:.3f}  informativeness {m['dci_informativeness']:.3f}",
             f"FactorVAE score {m['factor_vae_score']:.3f}   β-VAE score {m['beta_vae_score']:.3f}   "
             f"reconstruction {result['reconstruction']:.2f} nats/image"]
    if result.get("aggregate_posterior"):
        a = result["aggregate_posterior"]
        lines.append(f"aggregate posterior: total correlation {a['tc']:.2f} nats, index-code MI {a['mi']:.2f} nats, "
                     f"dimension-wise KL {a['dim_kl']:.2f} nats")
    for d in sorted(result["dimensions"], key=lambda d: -d["normalized_mi"])[:10]:
        lines.append(f"  z{d['dimension']}: {d['factor']} (I/H = {d['normalized_mi']:.2f})")
    return "\n".join(lines)

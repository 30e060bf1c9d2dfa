"""Held-out evaluation of a run: −ELBO, importance-weighted NLL, active units, KL per dimension.

Protocol (recorded in ``eval.json``): the test split, binarized as in training — under
``dynamic`` binarization one Bernoulli draw with ``binarization_seed`` (the test set is
fixed, as in Burda et al. 2015) — the weights with the best validation −ELBO, and K
importance samples z_k ~ q(z|x) drawn with ``seed``.

Cost: N images × K samples decoder passes. The samples of a chunk of images are
decoded in one batched call (``chunk`` decoder inputs at a time), so memory stays
bounded whatever K is and there is no per-image Python loop.
"""

from __future__ import annotations

import json
import math
import sys
import time
import weakref
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from . import distributions as dist
from .config import atomic_write_text, json_text
from .data import binarize_fixed
from .errors import TfvaeError
from .models import registry
from .objectives import iw_log_likelihood, log_importance_weights
from .rundir import load_model, run_dataset

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2015, section 5.2


_LOG_WEIGHT_FNS = weakref.WeakKeyDictionary()  # one traced function per model


def standard_error(values) -> float:
    """Standard error of the mean of per-image values [N] (nats): std (ddof = 1) / √N; NaN
    when N < 2."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    return float(np.std(values, ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def log_weights_fn(model):
    """A ``tf.function`` (x [B,H,W,C], eps [S,B,D]) -> (log_w, log_lik) [S, B], plus the
    posterior's (loc, scale) [B, D] (used for the analytic KL and active units); for a
    hierarchical VAE also each group's KL [L, S, B].
    Cached per model, so repeated evaluations reuse its traces."""
    if model in _LOG_WEIGHT_FNS:
        return _LOG_WEIGHT_FNS[model]

    @tf.function(reduce_retracing=True)
    def fn(x, eps, labels=None):
        if hasattr(model, "log_weights"):  # a hierarchical proposal (tfvae.models.hvae)
            return model.log_weights(x, eps, labels)  # and the groups' KLs [L, S, B]
        q = model.posterior(x, labels)
        log_w, log_lik = log_importance_weights(x, q, model.prior(), lambda z: model.likelihood(z, labels), eps)
        return log_w, log_lik, q.mean(), q.stddev()

    _LOG_WEIGHT_FNS[model] = fn
    return fn


NOISE_SCHEME = "eps[i, k] = numpy default_rng([seed, i]).standard_normal((K, D))[k], i = test-image index"


def image_streams(seed: int, indices) -> list:
    """The noise generator of each image: ``default_rng([seed, i])`` for i in ``indices``
    (:data:`NOISE_SCHEME`). Image i's K samples are its generator's first K·D standard-normal
    draws, taken in order call by call, so they are the same whatever the chunk size, the
    images evaluated beside it, or the worker that runs it: the NLL does not depend on how
    the work is batched, and memory holds one call's draws, not K."""
    return [np.random.default_rng([int(seed), int(i)]) for i in indices]


def call_shape(iw_samples: int, chunk: int) -> tuple:
    """(samples per call S, images per call) of a batched evaluation with at most ``chunk``
    decoder inputs per call: K ≤ chunk evaluates ⌊chunk / K⌋ images' K samples in one call;
    a larger K is split into calls of ``chunk`` samples and one of the rest. (Calls of equal
    size measured no faster, and this split keeps every per-image NLL bit-identical to the
    evaluations before issue 28: ``bench/results/eval_speed.json``.)"""
    k, chunk = int(iw_samples), int(chunk)
    samples = min(k, chunk)
    return samples, max(1, chunk // samples)


class Progress:
    """Progress of a long loop with the time left: a Keras ``Progbar`` when stdout is a
    terminal, else one line per tenth of the work (``done/total unit, elapsed s, about
    N s left``), so a log or pipe gets ten lines, not a line per update."""

    def __init__(self, total: int, unit: str):
        self.total, self.unit, self.done, self.start, self.next_tenth = int(total), unit, 0, time.perf_counter(), 1
        self.bar = keras.utils.Progbar(self.total, unit_name=unit.split()[-1].rstrip("s")) \
            if sys.stdout.isatty() else None

    def add(self, count: int) -> None:
        """Count ``count`` more units done."""
        self.done += int(count)
        if self.bar is not None:
            self.bar.add(count)
            return
        if self.done * 10 >= self.next_tenth * self.total or self.done >= self.total:
            elapsed = time.perf_counter() - self.start
            left = elapsed * (self.total - self.done) / max(self.done, 1)
            print(f"{self.done}/{self.total} {self.unit}, {elapsed:.0f} s, about {left:.0f} s left", flush=True)
            self.next_tenth = self.done * 10 // self.total + 1


def evaluate_images(model, images, iw_samples: int = 1000, seed: int = 0, chunk: int = 4096,
                    progress: bool = True, labels=None, first_index: int = 0) -> dict:
    """Evaluate ``model`` on float32 images [N, H, W, C].

    Args:
        labels: int labels [N] (needed by a conditional VAE, which then estimates log p(x|y)).
        iw_samples: K ≥ 1 importance samples per image.
        seed: seed of the ε ~ N(0, I) noise, keyed per image (:func:`image_streams`).
        chunk: decoder inputs per batched call (images per call × samples per call, see
            :func:`call_shape`); it bounds memory (the noise is drawn per call) and changes
            speed, not the result (beyond float32 rounding, ~1e-5 nats).
        progress: show the progress with the estimated time left (:class:`Progress`).
        first_index: the index of ``images[0]`` in its split (the noise key of each image).

    Returns:
        Dict of per-image float64 arrays [N]: ``nll`` (−log p̂(x), Burda et al. 2015
        eq. 8), ``neg_elbo`` (reconstruction + kl), ``reconstruction`` (−(1/K) Σ_k
        log p(x|z_k)), ``kl`` (analytic; a Monte-Carlo estimate for learned priors and the
        hierarchical VAE); and ``posterior_mean`` [N, D], ``kl_per_dim`` [N, D] (standard
        prior), ``kl_per_group`` [N, L] (hierarchical VAE: each group's analytic KL given the
        groups above, averaged over the K samples).
    """
    n = len(images)
    k = int(iw_samples)
    d = model.latent_dim
    samples_per_call, images_per_call = call_shape(k, chunk)
    fn = log_weights_fn(model)
    out = {key: [] for key in ("nll", "reconstruction", "kl", "posterior_mean", "kl_per_dim", "kl_per_group")}
    bar = Progress(n, "test images") if progress else None
    # The analytic KL needs a one-layer posterior and the standard prior; otherwise (learned
    # priors, the hierarchical VAE) KL = E_q[log q − log p] from the same samples.
    standard = model.config.prior == "standard" and not hasattr(model, "log_weights")
    if getattr(model, "conditional", False):
        if labels is None:
            raise TfvaeError("a conditional VAE is evaluated with the test labels; the dataset has none")
        onehot = np.eye(model.num_classes, dtype=np.float32)[labels]
    for start in range(0, n, images_per_call):
        x = tf.constant(images[start:start + images_per_call])
        y = None if labels is None or not getattr(model, "conditional", False) else \
            tf.constant(onehot[start:start + images_per_call])
        b = int(x.shape[0])
        streams = image_streams(seed, range(first_index + start, first_index + start + b))
        log_w, log_lik, kl_groups = [], [], 0.0
        for s0 in range(0, k, samples_per_call):
            rows = min(samples_per_call, k - s0)
            eps = tf.constant(np.stack([g.standard_normal((rows, d), dtype=np.float32) for g in streams], axis=1))
            outs = fn(x, eps) if y is None else fn(x, eps, y)
            lw, ll, loc, scale = outs[:4]
            log_w.append(lw.numpy())
            log_lik.append(ll.numpy())
            if len(outs) == 5:  # [L, S, B] -> the sum over samples, [B, L]
                kl_groups = kl_groups + outs[4].numpy().astype(np.float64).sum(axis=1).T
        log_w, log_lik = np.concatenate(log_w), np.concatenate(log_lik)
        reconstruction = -log_lik.astype(np.float64).mean(axis=0)
        out["nll"].append(-iw_log_likelihood(log_w, axis=0))
        out["reconstruction"].append(reconstruction)
        out["posterior_mean"].append(loc.numpy())
        if len(outs) == 5:
            out["kl_per_group"].append(kl_groups / k)
        if standard:
            kl_dims = dist.kl_per_dimension(loc, scale).numpy().astype(np.float64)
            out["kl"].append(kl_dims.sum(axis=1))
            out["kl_per_dim"].append(kl_dims)
        else:
            out["kl"].append(-log_w.astype(np.float64).mean(axis=0) - reconstruction)
        if bar is not None:
            bar.add(b)
    result = {key: np.concatenate(v) for key, v in out.items() if v}
    result["neg_elbo"] = result["reconstruction"] + result["kl"]
    return result


def summarize(result: dict, group_dims=None) -> dict:
    """Means over images (nats per image), the NLL's standard error, active units.

    Active units (Burda et al. 2015, section 5.2): dimension d is active when
    Cov_x(E_q[z_d]) > 0.01, i.e. the variance over images of the posterior mean. With
    ``group_dims`` (a hierarchical VAE, top group first) also ``kl_per_group`` and
    ``active_units_per_group``; there the posterior mean is that of the noise ε along the
    mean path (:attr:`tfvae.models.hvae.HierarchicalVAE.encoder`).
    """
    n = len(result["nll"])
    activity = np.var(result["posterior_mean"].astype(np.float64), axis=0)
    groups = {}
    if group_dims is not None and "kl_per_group" in result:
        from .models.hvae import group_slices

        groups = {"group_dims": [int(d) for d in group_dims],
                  "kl_per_group": [float(v) for v in np.mean(result["kl_per_group"], axis=0)],
                  "active_units_per_group": [int(np.sum(activity[a:b] > ACTIVE_UNIT_THRESHOLD))
                                             for a, b in group_slices(group_dims)]}
    return {
        "neg_elbo": float(np.mean(result["neg_elbo"])),
        "reconstruction": float(np.mean(result["reconstruction"])),
        "kl": float(np.mean(result["kl"])),
        "nll": float(np.mean(result["nll"])),
        "nll_stderr": standard_error(result["nll"]),
        "elbo_gap": float(np.mean(result["neg_elbo"] - result["nll"])),
        "active_units": int(np.sum(activity > ACTIVE_UNIT_THRESHOLD)),
        "latent_dim": int(activity.shape[0]),
        "activity_per_dim": [float(v) for v in activity],
        "kl_per_dim": [float(v) for v in np.mean(result["kl_per_dim"], axis=0)] if "kl_per_dim" in result else None,
        **groups,
    }


def evaluate_run(run_dir, iw_samples: int = 1000, max_examples=None, seed: int = 0, checkpoint: str = "best",
                 data_dir=None, idx_dir=None, chunk: int = 4096, progress: bool = True, write: bool = True,
                 image_dir=None, strategy: str = "default") -> dict:
    """Evaluate a run directory on its test split and write ``eval.json``.

    Args:
        run_dir: a folder written by ``train``.
        iw_samples: K ≥ 1.
        max_examples: evaluate only the first N test images (None: all).
        seed: seed of the importance samples.
        checkpoint: ``best`` or ``last``.
        data_dir, idx_dir, image_dir: override where the data is read from (same dataset,
            e.g. an image folder moved elsewhere).
        strategy: ``multiworker`` splits the test images over the workers of ``TF_CONFIG``
            (``tfvae.training.multiworker.evaluate_sharded``); the chief writes ``eval.json``, equal
            to one machine's, and the others write nothing.

    Returns:
        ``{"protocol": {...}, "metrics": {...}}`` as written to ``eval.json``; metrics in
        nats per image.

    Raises:
        TfvaeError: not a run directory, K < 1, max_examples < 1, or missing data.
    """
    if not isinstance(iw_samples, int) or iw_samples < 1:
        raise TfvaeError(f"--iw-samples must be a positive integer, got {iw_samples!r}")
    if max_examples is not None and max_examples < 1:
        raise TfvaeError(f"--max-examples must be a positive integer, got {max_examples!r}")
    from .rundir import read_config

    family = registry.of(read_config(run_dir))
    if family.evaluation is None:
        raise TfvaeError(f"evaluate computes likelihood bounds, which --model {family.name} does not define; "
                         f"use: python cli.py compare {run_dir}")
    if not family.posterior_scale:
        iw_samples = 1  # a point-mass posterior: every importance sample is the same, the bound is the ELBO
    if family.evaluation == "closed_form":
        return evaluate_pca(run_dir, max_examples=max_examples, data_dir=data_dir, idx_dir=idx_dir, write=write,
                            image_dir=image_dir)
    workers = None
    if strategy == "multiworker":
        from .training.multiworker import is_chief, multiworker_strategy

        workers = multiworker_strategy()
        write = write and is_chief(workers)
    elif strategy != "default":
        raise TfvaeError(f"--strategy must be default or multiworker, got {strategy!r}")
    if write:
        from .locks import folder_lock

        with folder_lock(run_dir, "evaluate"):
            return _evaluate_run(run_dir, iw_samples, max_examples, seed, checkpoint, data_dir, idx_dir, chunk,
                                 progress, write, image_dir, workers)
    return _evaluate_run(run_dir, iw_samples, max_examples, seed, checkpoint, data_dir, idx_dir, chunk, progress, write,
                         image_dir, workers)


def check_chunk_memory(cfg, chunk: int) -> None:
    """Refuse a ``--chunk`` whose one batched call cannot fit in memory: ``chunk`` decoder
    inputs cost at least the activations of a training step of that many images
    (:func:`tfvae.config.estimate_training_bytes`, without the backward pass's share) and
    their noise (chunk × D float32, twice). K does not enter: the noise of a call is drawn
    per call, so ``--iw-samples`` at its bound costs only the [K, images per call] weights.

    Raises:
        TfvaeError: names ``--chunk``, the estimate and this machine's memory.
    """
    import copy

    from .config import _physical_memory, estimate_training_bytes

    probe = copy.deepcopy(cfg)
    probe.train.batch_size, probe.train.mc_samples, probe.train.objective = int(chunk), 1, "elbo"
    # and its noise: [S, b, D] float32 drawn in numpy, then copied into a tensor
    need = estimate_training_bytes(probe).get("activations", 0) // 3 + 2 * 4 * int(chunk) * int(cfg.model.latent_dim)
    memory = _physical_memory()
    if memory and need > memory:
        raise TfvaeError(f"--chunk {chunk}: one batched call of {chunk} decoder inputs needs at least "
                         f"{need / 2**30:.1f} GiB and this machine has {memory / 2**30:.1f} GiB: lower --chunk "
                         f"(it changes speed and memory, not the result)")


def _evaluate_run(run_dir, iw_samples, max_examples, seed, checkpoint, data_dir, idx_dir, chunk, progress, write,
                  image_dir=None, workers=None):
    model, cfg = load_model(run_dir, checkpoint)
    check_chunk_memory(cfg, chunk)
    check_finite_weights(model, run_dir, checkpoint)
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    if idx_dir is not None:
        cfg.data.idx_dir = idx_dir
    if image_dir is not None:
        cfg.data.image_dir = image_dir
    data = run_dataset(run_dir, cfg)
    if data.image_shape != tuple(cfg.model.image_shape):
        raise TfvaeError(f"test images have shape {data.image_shape}, the model expects {tuple(cfg.model.image_shape)}")
    raw = data.test if max_examples is None else data.test[:max_examples]
    labels = None if data.test_labels is None else data.test_labels[:len(raw)]
    images = binarize_fixed(raw, cfg.data.binarization, cfg.data.binarization_seed)

    start = time.perf_counter()
    if workers is None:
        result = evaluate_images(model, images, iw_samples=iw_samples, seed=seed, chunk=chunk, progress=progress,
                                 labels=labels)
    else:
        from .training.multiworker import evaluate_sharded

        d = model.latent_dim
        widths = {"nll": (), "reconstruction": (), "kl": (), "posterior_mean": (d,)}
        if model.config.prior == "standard" and not hasattr(model, "log_weights"):
            widths["kl_per_dim"] = (d,)
        if registry.of(cfg).latent_groups:
            widths["kl_per_group"] = (len(model.group_dims),)
        block = max(1, chunk // min(iw_samples, chunk))  # the images of one batched call, as on one machine
        result = evaluate_sharded(workers, lambda a, b: evaluate_images(
            model, images[a:b], iw_samples=iw_samples, seed=seed, chunk=chunk, progress=False,
            labels=None if labels is None else labels[a:b], first_index=a), len(images), block, widths)
        result["neg_elbo"] = result["reconstruction"] + result["kl"]
    seconds = time.perf_counter() - start
    metrics = summarize(result, model.group_dims if registry.of(cfg).latent_groups else None)
    shape = tuple(cfg.model.image_shape)
    for key in ("nll", "neg_elbo"):
        metrics[f"{key}_bits_per_dim"], conversion = model.likelihood_object.bits_per_dim(metrics[key], shape,
                                                                                         cfg.data.binarization)
    report = {
        "protocol": {**protocol(run_dir, cfg, len(images), iw_samples, seed, checkpoint, chunk),
                     "bits_per_dim": conversion,
                     "workers": 1 if workers is None else int(_workers_count())},
        "metrics": metrics,
        "seconds": seconds,
    }
    if write:
        atomic_write_text(Path(run_dir) / "eval.json", json_text(report))
    return report


def _workers_count() -> int:
    from .training.multiworker import cluster_from_env

    return cluster_from_env()["workers"]


def checkpoint_sha256(run_dir, checkpoint: str = "best") -> str:
    """SHA-256 of the weights file ``checkpoint`` (``best`` falls back to ``last``, as loading does)."""
    from .lite import sha256_file
    from .rundir import checkpoint_path

    path = checkpoint_path(run_dir, checkpoint)
    if checkpoint == "best" and not path.is_file():
        path = checkpoint_path(run_dir, "last")
    return sha256_file(path)


def protocol(run_dir, cfg, num_images: int, iw_samples: int, seed: int, checkpoint: str, chunk: int) -> dict:
    """Every setting that can change an evaluation's figures (recorded in ``eval.json``)."""
    from . import __version__

    return {
        "dataset": cfg.data.dataset,
        "data_source": cfg.data.image_dir or cfg.data.idx_dir or "tfds",
        "image_shape": list(cfg.model.image_shape),
        "likelihood": cfg.model.likelihood,
        "split": "test",
        "num_images": int(num_images),
        "first_image": 0,
        "binarization": cfg.data.binarization,
        "binarization_seed": cfg.data.binarization_seed if cfg.data.binarization == "dynamic" else None,
        "iw_samples": int(iw_samples),
        "sampling_seed": int(seed),
        "noise": NOISE_SCHEME,
        "checkpoint": checkpoint,
        "checkpoint_sha256": checkpoint_sha256(run_dir, checkpoint),
        "chunk": int(chunk),
        "estimator": _estimator(registry.of(cfg)),
        # a family with discrete codes has its own prior over them (not the --prior option's)
        "prior": "learned autoregressive over the code grid" if registry.of(cfg).discrete_codes else cfg.model.prior,
        **({"prior_sha256": _prior_sha256(run_dir)} if registry.of(cfg).discrete_codes else {}),
        "units": "nats per image",
        "tfvae_version": __version__,
        "tensorflow_version": tf.__version__,
    }


def _prior_sha256(run_dir) -> str:
    """SHA-256 of a VQ-VAE's learned prior (``checkpoints/prior.weights.h5``): the bound depends on it."""
    from .lite import sha256_file
    from .models.vqvae import PRIOR_FILE

    return sha256_file(Path(run_dir) / "checkpoints" / PRIOR_FILE)


def _estimator(family) -> str:
    if family.discrete_codes:
        return ("a bound, not an estimate: the posterior is the point mass at z_q(x), so -log p(x) <= "
                "-log p(x|z_q(x)) - log p(z_q(x)) (the ELBO; KL = -log p(z_q(x)) under the learned prior); every "
                "importance sample is the same, so K = 1 and nll = neg_elbo")
    if family.latent_groups:
        return ("log (1/K) sum_k p(x, z_1..L,k) / q(z_1..L,k|x) (Burda et al. 2015, eq. 8) with the hierarchical "
                "proposal: z_1..L,k drawn top-down, z_l ~ q(z_l|x, z_<l), q(z|x) = prod_l q(z_l|x, z_<l) and "
                "p(x, z) = p(x|z) prod_l p(z_l|z_<l) (Sønderby et al. 2016; Vahdat & Kautz 2020)")
    return ("log (1/K) sum_k p(x,z_k)/q(z_k|x), z_k ~ q(z|x) (Burda et al. 2015, eq. 8)"
            + ("; conditional on the test label: log p(x|y)" if family.conditional else ""))


def matching_report(run_dir, iw_samples: int, num_images: int, seed: int, checkpoint: str = "best"):
    """The run's ``eval.json`` if it was computed with exactly this protocol (K, number of
    images, seed, checkpoint and the checkpoint file's SHA-256, noise scheme); else None
    (also when the file is missing or unreadable)."""
    path = Path(run_dir) / "eval.json"
    try:
        report = json.loads(path.read_text())
        p = report["protocol"]
        ok = (p.get("iw_samples") == iw_samples and p.get("num_images") == num_images
              and p.get("sampling_seed") == seed and p.get("checkpoint") == checkpoint
              and p.get("noise") == NOISE_SCHEME and p.get("first_image", 0) == 0
              and p.get("checkpoint_sha256") == checkpoint_sha256(run_dir, checkpoint))
        return report if ok and isinstance(report.get("metrics"), dict) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def check_finite_weights(model, run_dir, checkpoint: str) -> None:
    """Raises TfvaeError naming the first weight with NaN or Inf values."""
    for var in model.weights:
        if not np.all(np.isfinite(var.numpy())):
            raise TfvaeError(f"{run_dir}: the {checkpoint} checkpoint holds NaN or Inf values ({var.path}); "
                             f"refusing to use it (train again, or resume from a good backup)")


def evaluate_pca(run_dir, max_examples=None, data_dir=None, idx_dir=None, write: bool = True, image_dir=None) -> dict:
    """Exact test log-density of a PPCA run (Tipping & Bishop 1999, eq. 4) on grey-level
    test images in [0, 1] (continuous data: a density, not comparable with a Bernoulli
    model's NLL of binary images). Writes ``eval.json``; metrics in nats per image."""
    from .rundir import load_model

    model, cfg = load_model(run_dir)
    if data_dir is not None:
        cfg.data.data_dir = data_dir
    if idx_dir is not None:
        cfg.data.idx_dir = idx_dir
    if image_dir is not None:
        cfg.data.image_dir = image_dir
    data = run_dataset(run_dir, cfg)
    raw = data.test if max_examples is None else data.test[:max_examples]
    start = time.perf_counter()
    log_density = model.log_prob(raw.astype(np.float32) / 255.0)
    n = len(log_density)
    report = {
        "protocol": {"dataset": cfg.data.dataset, "split": "test", "num_images": int(n), "binarization": "none",
                     "binarization_seed": None, "iw_samples": None, "checkpoint": "closed form",
                     "estimator": "exact log N(x; mu, W W^T + sigma^2 I) of grey levels (Tipping & Bishop 1999, eq. 4)",
                     "units": "nats per image (continuous density)"},
        "metrics": {"log_density": float(np.mean(log_density)),
                    "log_density_stderr": standard_error(log_density),
                    "noise_variance": model.noise_variance, "latent_dim": model.latent_dim},
        "seconds": time.perf_counter() - start,
    }
    if write:
        atomic_write_text(Path(run_dir) / "eval.json", json_text(report))
    return report


def format_report(report: dict) -> str:
    """A short table of an ``eval.json`` report."""
    m, p = report["metrics"], report["protocol"]
    if "log_density" in m:
        return (f"test log-density  {m['log_density']:.2f} ± {m['log_density_stderr']:.2f} nats/image  "
                f"(PPCA, exact; continuous grey levels, {p['num_images']} test images; σ² = {m['noise_variance']:.4g})")
    bound = "prior_sha256" in p  # a point-mass posterior (discrete codes): the bound is the ELBO
    rows = [
        ("test −log p(x) ≤" if bound else "test NLL  −log p(x)",
         f"{m['nll']:.2f} ± {m['nll_stderr']:.2f} nats  "
         + ("(a bound: −log p(x|z_q) − log p(z_q), the ELBO of the point-mass posterior; ± 1 s.e. over images)"
            if bound else f"(K={p['iw_samples']}, ± 1 s.e. over images)")),
        *([("  in bits/dim", f"NLL {m['nll_bits_per_dim']:.4f}, −ELBO {m['neg_elbo_bits_per_dim']:.4f}  "
                             f"({p.get('bits_per_dim', '')})")] if "nll_bits_per_dim" in m else []),
        ("test −ELBO", f"{m['neg_elbo']:.2f} nats"),
        ("  reconstruction", f"{m['reconstruction']:.2f} nats"),
        ("  KL(q‖p)", f"{m['kl']:.2f} nats"),
        ("ELBO gap (−ELBO − NLL)", f"{m['elbo_gap']:.2f} nats"),
        ("active units", f"{m['active_units']} of {m['latent_dim']}  (Cov_x E_q[z_d] > {ACTIVE_UNIT_THRESHOLD})"),
        *([("KL per group", " ".join(f"{v:.1f}" for v in m["kl_per_group"]) + "  (nats, top group first)"),
           ("active units per group", " ".join(f"{a}/{d}" for a, d in zip(m["active_units_per_group"], m["group_dims"])))]
          if "kl_per_group" in m else
          [("KL per dimension", " ".join(f"{v:.1f}" for v in sorted(m["kl_per_dim"], reverse=True)) + "  (nats, sorted)"
            if m.get("kl_per_dim") else "n/a (KL = −log p(z_q) of the code grid)" if bound
            else "n/a (learned prior: KL is a Monte-Carlo estimate of the total)")]),
        ("protocol", f"{p['dataset']} {p['split']}, {p['num_images']} images, binarization {p['binarization']}"
                     + (f" (seed {p['binarization_seed']})" if p["binarization_seed"] is not None else "")),
        ("time", f"{report['seconds']:.1f} s"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

"""Probabilistic PCA (Tipping & Bishop 1999), fitted in closed form: the linear baseline.

Model: z ~ N(0, I_q), x | z ~ N(W z + μ, σ² I_d), so x ~ N(μ, C) with C = W Wᵀ + σ² I_d.
Maximum likelihood (their eq. 7 and 8): W = U_q (Λ_q − σ² I)^{1/2}, σ² = the mean of the
d − q discarded eigenvalues of the sample covariance, μ = the sample mean; U_q, Λ_q are
the leading eigenvectors / eigenvalues (scikit-learn's ``PCA`` computes them).

Images are flattened to d = H·W·C grey levels in [0, 1] (continuous data: the log-density
is in nats per image, and is not comparable with a Bernoulli model's NLL of binary
images). Run directory: ``config.json`` (``model.model = "pca"``), ``pca.npz``,
``summary.json``, ``figures/``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..config import atomic_savez, atomic_write_text, json_text
from ..data import binarize_fixed
from ..errors import TfvaeError

PCA_FILE = "pca.npz"


class PPCA:
    """A fitted probabilistic PCA model with the interface the other models share.

    Args:
        mean: μ, float64 [d].
        weights: W, float64 [d, q].
        noise_variance: σ² > 0.
        config: the run's ModelConfig (``image_shape`` gives the image layout).
    """

    conditional = False

    def __init__(self, mean, weights, noise_variance: float, config):
        self.mean = np.asarray(mean, np.float64)
        self.weights = np.asarray(weights, np.float64)
        self.noise_variance = float(noise_variance)
        self.config = config
        self.image_shape = tuple(config.image_shape)

    @property
    def latent_dim(self) -> int:
        """q, the number of components."""
        return self.weights.shape[1]

    def _m_inverse(self):
        q = self.latent_dim
        return np.linalg.inv(self.weights.T @ self.weights + self.noise_variance * np.eye(q))

    def encode_mean(self, x, labels=None) -> np.ndarray:
        """Posterior mean E[z|x] = M⁻¹ Wᵀ (x − μ), M = WᵀW + σ²I (Tipping & Bishop 1999,
        eq. 6 and section 3.2). x [N, H, W, C] -> float32 [N, q]."""
        flat = np.asarray(x, np.float64).reshape(len(x), -1)
        return ((flat - self.mean) @ self.weights @ self._m_inverse().T).astype(np.float32)

    def decode_mean(self, z, labels=None) -> np.ndarray:
        """E[x|z] = W z + μ, clipped to the pixel range [0, 1]: float32 [N, H, W, C]."""
        z = np.asarray(z, np.float64)
        flat = z @ self.weights.T + self.mean
        return np.clip(flat, 0.0, 1.0).reshape((len(z),) + self.image_shape).astype(np.float32)

    def sample_prior(self, n: int, seed: int = 0) -> np.ndarray:
        """n draws z ~ N(0, I_q) from numpy's ``default_rng(seed)``: float32 [n, q]."""
        return np.random.default_rng(seed).standard_normal((n, self.latent_dim)).astype(np.float32)

    def log_prob(self, x) -> np.ndarray:
        """Exact log N(x; μ, W Wᵀ + σ² I) per image, float64 [N], nats (continuous x).

        Uses |C| = σ^{2(d−q)} |M| and C⁻¹ = σ⁻² (I − W M⁻¹ Wᵀ) (Tipping & Bishop 1999,
        eq. 4 and appendix), so it costs O(N d q), never a d×d matrix.
        """
        flat = np.asarray(x, np.float64).reshape(len(x), -1) - self.mean
        d, q, s2 = flat.shape[1], self.latent_dim, self.noise_variance
        m = self.weights.T @ self.weights + s2 * np.eye(q)
        _, logdet_m = np.linalg.slogdet(m)
        logdet_c = (d - q) * math.log(s2) + logdet_m
        proj = flat @ self.weights  # [N, q]
        quad = (np.sum(flat**2, axis=1) - np.sum(proj @ np.linalg.inv(m) * proj, axis=1)) / s2
        return -0.5 * (d * math.log(2 * math.pi) + logdet_c + quad)


def fit_ppca(images: np.ndarray, n_components: int, config, seed: int = 0) -> PPCA:
    """Fit PPCA by maximum likelihood to images float [N, H, W, C] (grey levels).

    Raises:
        TfvaeError: ``n_components`` ≥ the number of pixels or of images.
    """
    from sklearn.decomposition import PCA

    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    if not 0 < n_components < min(flat.shape):
        raise TfvaeError(f"--latent-dim for --model pca must be below {min(flat.shape)} "
                         f"(pixels and images), got {n_components}")
    pca = PCA(n_components=n_components, svd_solver="full", random_state=seed).fit(flat)
    s2 = float(pca.noise_variance_)
    w = pca.components_.T * np.sqrt(np.maximum(pca.explained_variance_ - s2, 0.0))
    return PPCA(pca.mean_, w, s2, config)


def fit_run(cfg, data, run_dir) -> dict:
    """``train --model pca``: fit on the training split, write pca.npz, summary.json
    (validation log-density), and figures. Returns the summary dict."""
    from .. import plots

    run_dir = Path(run_dir)
    start = time.perf_counter()
    train_x = data.train.astype(np.float32) / 255.0
    model = fit_ppca(train_x, cfg.model.latent_dim, cfg.model, seed=cfg.train.seed)
    seconds = time.perf_counter() - start
    atomic_savez(run_dir / PCA_FILE, mean=model.mean, weights=model.weights, noise_variance=model.noise_variance)
    val_ll = float(np.mean(model.log_prob(data.validation.astype(np.float32) / 255.0)))
    shown = data.test if data.test is not None else data.validation
    originals = binarize_fixed(shown[:16], cfg.data.binarization, cfg.data.binarization_seed)
    recon = model.decode_mean(model.encode_mean(originals))
    figures = run_dir / "figures"
    plots.save_image_grid(np.concatenate([originals, recon]), figures / "reconstructions.png", rows=2,
                          title="test images (top) and PPCA reconstructions W E[z|x] + μ (bottom)")
    plots.save_image_grid(model.decode_mean(model.sample_prior(64, cfg.train.seed)), figures / "samples.png", rows=8,
                          title="PPCA: W z + μ, z ~ N(0, I)")
    summary = {
        "run_dir": str(run_dir),
        "epochs": 0,
        "seconds": seconds,
        "noise_variance": model.noise_variance,
        "val_log_density_grey": val_ll,
        "note": "closed-form maximum likelihood (Tipping & Bishop 1999); log-density of continuous grey levels",
    }
    atomic_write_text(run_dir / "summary.json", json_text(summary))
    return summary


def load_pca(run_dir, cfg) -> PPCA:
    """Read RUN_DIR/pca.npz (``cfg``: the run's RunConfig).

    Raises:
        TfvaeError: the file is missing or unreadable.
    """
    path = Path(run_dir) / PCA_FILE
    if not path.is_file():
        raise TfvaeError(f"{run_dir} is not a complete run: {PCA_FILE} is missing")
    try:
        with np.load(path) as f:
            return PPCA(f["mean"], f["weights"], float(f["noise_variance"]), cfg.model)
    except (OSError, ValueError, KeyError) as exc:
        raise TfvaeError(f"{path}: cannot read it ({exc})") from None

"""Deterministic autoencoder (``--model ae``): the VAE's encoder and decoder without the KL.

z = the encoder's mean, loss = reconstruction = −log p(x|z) in nats per image (no KL
term, no prior in the loss), the lectures' baseline against which the VAE's prior earns
its keep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from ..config import ModelConfig
from .vae import VAE


class Autoencoder(VAE):
    """Deterministic autoencoder: the VAE's encoder and decoder, z = the encoder's mean,
    loss = reconstruction = −log p(x|z) in nats per image (no KL term, no prior in the
    loss). Its encoder's scale output is unused.

    Args: as :class:`tfvae.models.vae.VAE` (β, the objective and the KL options do not apply).

    Sampling (``sample_prior``) decodes z ~ N(0, I), as the lectures do; ``code_gaussian``
    (mean [D], covariance [D, D]), fitted to the training codes after training, gives the
    better baseline (``sample_codes``).
    """

    metric_names = ("loss", "reconstruction")

    def __init__(self, config: ModelConfig, seed=None, **kwargs):
        for unused in ("beta", "kl_warmup_steps", "mc_samples", "objective", "iw_samples", "free_bits"):
            kwargs.pop(unused, None)
        super().__init__(config, seed=seed, **kwargs)
        self.encoder.get_layer("scale_raw").trainable = False  # no scale: z is the mean
        self.checkpoint_monitor = "val_reconstruction"
        self.code_gaussian = None

    def losses_for(self, x, labels=None, eps=None, training=False, weight=None):
        """Named terms ``loss`` = ``reconstruction`` = −log p(x | z = encoder mean), batch mean in nats."""
        z = self.encoder(x, training=training)["loc"]
        reconstruction = -tf.reduce_mean(self.likelihood(z, training=training).log_prob(x))
        return {"loss": reconstruction, "reconstruction": reconstruction}

    def validation_weight(self):
        return None

    def fit_artifacts(self, data, cfg, run_dir) -> None:
        """Fit N(mean, cov) to the codes of the training images (binarized once with the run's
        seed) and save it as RUN_DIR/code_gaussian.npz (mean [D], cov [D, D] float64)."""
        from ..codes import posterior_means
        from ..config import atomic_savez
        from ..data import binarize_fixed
        from ..rundir import CODE_GAUSSIAN

        x = binarize_fixed(data.train, cfg.data.binarization, cfg.data.binarization_seed)
        codes = posterior_means(self, x).astype(np.float64)
        mean, cov = codes.mean(axis=0), np.cov(codes, rowvar=False).reshape(codes.shape[1], codes.shape[1])
        atomic_savez(Path(run_dir) / CODE_GAUSSIAN, mean=mean, cov=cov)
        self.code_gaussian = (mean, cov)

    def restore_artifacts(self, run_dir) -> None:
        """Read RUN_DIR/code_gaussian.npz when it exists (``code_gaussian`` stays None otherwise)."""
        from ..rundir import CODE_GAUSSIAN

        path = Path(run_dir) / CODE_GAUSSIAN
        if path.is_file():
            with np.load(path) as f:
                self.code_gaussian = (f["mean"], f["cov"])

    def sample_codes(self, n: int, seed: int = 0) -> np.ndarray:
        """n draws from the Gaussian fitted to the training codes: float32 [n, D].

        Raises:
            ValueError: no fitted Gaussian (``code_gaussian`` is None).
        """
        if self.code_gaussian is None:
            raise ValueError("this autoencoder has no Gaussian fitted to its training codes")
        mean, cov = self.code_gaussian
        return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n).astype(np.float32)

"""Every combination of options that validation accepts runs; the others are refused in one line.

model × prior × objective × likelihood (Bernoulli, Gaussian with fixed or learned σ) × arch
is enumerated (``resnet`` with the ELBO and the Bernoulli likelihood only). Accepted combinations are built as ``train`` builds them and run, on a tiny
synthetic slice, through one training step, one validation step, the importance-weighted
evaluation (K = 2), reconstruction and sampling from the prior (eagerly, so the whole
enumeration costs seconds, not one graph trace each); refused ones must raise a TfvaeError
that names an option. ``tests/test_cli.py`` and ``tests/test_family.py`` run representative
combinations end to end through the CLI.
"""

import itertools

import numpy as np
import pytest

from tfvae.config import ARCHITECTURES, OBJECTIVES, PRIORS, RunConfig
from tfvae.errors import TfvaeError
from tfvae.models import registry

LIKELIHOODS = [("bernoulli", None), ("gaussian", 0.1), ("gaussian", "learned")]


def combinations():
    for model, prior, objective, (likelihood, sigma), arch in itertools.product(
            registry.names(), PRIORS, OBJECTIVES, LIKELIHOODS, ARCHITECTURES):
        if arch == "resnet" and (objective, likelihood) != ("elbo", "bernoulli"):
            continue  # resnet only changes the networks: one objective and likelihood cover it (CI time)
        values = dict(model=model, prior=prior, objective=objective, likelihood=likelihood, arch=arch, latent_dim=2,
                      hidden_units=[8], conv_filters=[4, 8], prior_components=3, batch_size=8, epochs=2,
                      kl_warmup_epochs=1 if registry.family(model).kl_schedule else 0)
        if sigma is not None:
            values["sigma"] = sigma
        if objective == "iwae":
            values["train_iw_samples"] = 2
        if model == "hvae":  # two one-dimensional groups (latent_dim 2) and a narrow top-down state
            values.update(group_dims=[1, 1], hvae_width=8)
        if arch == "resnet":
            values["res_blocks"] = 1
        yield f"{model}-{prior}-{objective}-{likelihood}{sigma or ''}-{arch}", values


def test_every_accepted_combination_runs_and_every_other_is_refused_in_one_line():
    import keras
    import tensorflow as tf

    from tfvae.data import binarize_fixed, heldout_pipeline, train_pipeline
    from tfvae.evaluate import evaluate_images, summarize
    from tfvae.models import build_model
    from tfvae.models.pca import fit_ppca
    from tfvae.codes import sample_means
    from tfvae.training import make_optimizer

    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, (16, 28, 28, 1)).astype(np.uint8)
    labels = np.arange(16) % 3
    accepted, refused, failures = [], [], []
    tf.config.run_functions_eagerly(True)
    try:
        for name, values in combinations():
            try:
                cfg = RunConfig.from_options(values).resolved()
                cfg.validate()
            except TfvaeError as exc:
                message = str(exc)
                assert "\n" not in message and "--" in message, (name, message)
                refused.append(name)
                continue
            accepted.append(name)
            m, t = cfg.model, cfg.train
            m.image_shape = [28, 28, 1]
            family = registry.of(m)
            m.num_classes = 3 if family.conditional else 0
            try:
                if not family.keras:
                    ppca = fit_ppca(raw.astype(np.float32) / 255.0, m.latent_dim, m, seed=0)
                    assert np.all(np.isfinite(ppca.log_prob(raw[:4].astype(np.float32) / 255.0)))
                    continue
                keras.utils.set_random_seed(0)
                model = build_model(m, beta=t.beta, kl_warmup_steps=2, mc_samples=t.mc_samples, seed=0,
                                    objective=t.objective, iw_samples=t.train_iw_samples, free_bits=t.free_bits)
                model.compile(optimizer=make_optimizer(t, 2), run_eagerly=True)
                with_labels = family.conditional
                samples = t.train_iw_samples if t.objective == "iwae" else t.mc_samples
                ds = train_pipeline(raw, 8, cfg.data.binarization, 0,
                                    noise_shape=(samples, m.latent_dim) if family.posterior_scale else None,
                                    labels=labels if with_labels else None, num_classes=m.num_classes)
                val = heldout_pipeline(raw[:8], 8, cfg.data.binarization, 0, labels=labels[:8] if with_labels else None,
                                       num_classes=m.num_classes)
                history = model.fit(ds, steps_per_epoch=1, epochs=1, validation_data=val, verbose=0)
                assert np.isfinite(history.history["loss"][0]) and np.isfinite(history.history["val_loss"][0])
                x = binarize_fixed(raw[:4], cfg.data.binarization, 0)
                if family.evaluation == "iw_nll":
                    s = summarize(evaluate_images(model, x, iw_samples=2, progress=False,
                                                  labels=labels[:4] if with_labels else None))
                    assert np.isfinite(s["nll"]) and np.isfinite(s["neg_elbo"]), s
                onehot = np.eye(3, dtype=np.float32)[labels[:4]] if with_labels else None
                recon = model.decode_mean(model.encode_mean(x, onehot), onehot).numpy()
                assert recon.shape == x.shape and np.all(np.isfinite(recon))
                drawn = sample_means(model, 3, seed=0)
                assert drawn.shape[1:] == (28, 28, 1) and np.all(np.isfinite(drawn))
            except Exception as exc:  # noqa: BLE001 (collect every failure, then report them all)
                failures.append(f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
    finally:
        tf.config.run_functions_eagerly(False)
    print(f"{len(accepted)} combinations accepted and run, {len(refused)} refused in one line, "
          f"{len(failures)} failed")
    assert not failures, "\n".join(failures)
    assert len(accepted) >= 100 and "cvae-vamp-elbo-bernoulli-conv" in refused
    assert "cvae-standard-elbo-gaussianlearned-kerasio" in accepted

"""The model families, one module each, and their registry.

* :mod:`tfvae.models.registry`: one :class:`~tfvae.models.registry.Family` record per
  family with its capabilities as data, and :func:`build_model`.
* :mod:`tfvae.models.base`: the one train step and evaluate step every Keras family shares.
* :mod:`tfvae.models.vae` (``vae``, ``cvae``), :mod:`tfvae.models.ae`,
  :mod:`tfvae.models.hvae`, :mod:`tfvae.models.btcvae`, :mod:`tfvae.models.pca`.

Importing this package imports no TensorFlow; the classes are imported on first use
(``from tfvae.models import VAE``).
"""

from __future__ import annotations

import importlib

from .registry import Family, build_model, families, family, names, of, register, require, unregister, with_capability

_LAZY = {"VAE": "vae", "Autoencoder": "ae", "HierarchicalVAE": "hvae", "BetaTCVAE": "btcvae", "PPCA": "pca", "VQVAE": "vqvae",
         "FamilyModel": "base", "split_batch": "base", "replica_share": "base"}

__all__ = ["Family", "build_model", "families", "family", "names", "of", "register", "require", "unregister",
           "with_capability", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

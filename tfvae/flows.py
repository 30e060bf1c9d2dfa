"""Inverse autoregressive flow (IAF) for a posterior (Kingma et al. 2016, "Improved
Variational Inference with Inverse Autoregressive Flow").

A step maps a sample z [N, d] of the posterior so far to

    z' = σ ⊙ z + (1 − σ) ⊙ m,   (m, s) = MADE(z, c),   σ = sigmoid(s + 2)

(the paper's numerically stable form, eq. 14; the +2 starts σ near 1, close to the
identity), where MADE (Germain et al. 2015) is a masked network in which output j depends
on z_1 … z_{j−1} only and on a context c [N, C] (the posterior's inputs). The Jacobian is
triangular with diagonal σ, so

    log q(z') = log q(z) − Σ_j log σ_j   (Kingma et al. 2016, eq. 10)

in one pass, for the samples the flow itself produces (what the ELBO and the
importance-weighted bound need). Successive steps reverse the order of the dimensions.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


def made_masks(d: int, hidden: int, reverse: bool = False):
    """The masks of a one-hidden-layer MADE (Germain et al. 2015, eqs. 12-13) over d inputs.

    Input j has degree j + 1 (1 … d, or d … 1 when ``reverse``); hidden unit k has degree
    1 + k mod (d − 1) (1 for d = 1); a hidden unit sees the inputs of degree ≤ its own, an
    output of degree j sees the hidden units of degree < j. So output j depends on the inputs
    of lower degree only.

    Returns:
        (input mask float32 [d, hidden], output mask float32 [hidden, d]).
    """
    degrees = np.arange(1, d + 1)[::-1] if reverse else np.arange(1, d + 1)
    hidden_degrees = 1 + np.arange(hidden) % max(d - 1, 1)
    in_mask = (degrees[:, None] <= hidden_degrees[None, :]).astype(np.float32)
    out_mask = (hidden_degrees[:, None] < degrees[None, :]).astype(np.float32)
    return in_mask, out_mask


@keras.saving.register_keras_serializable(package="tfvae")
class MaskedDense(layers.Layer):
    """Dense layer whose kernel is multiplied by a fixed 0/1 mask: x [N, in] -> [N, units].

    Args:
        mask: float32 [in, units], kept as a constant (not trained, saved in the config).
    """

    def __init__(self, mask, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.mask = np.asarray(mask, np.float32)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        n_in, units = self.mask.shape
        self.kernel = self.add_weight(name="kernel", shape=(n_in, units), initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(units,), initializer="zeros")

    def call(self, x):
        return ops.matmul(x, self.kernel * ops.cast(self.mask, self.kernel.dtype)) + self.bias

    def get_config(self):
        return {**super().get_config(), "mask": self.mask.tolist(),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


class IAFStep:
    """One IAF step over d dimensions with a context of any width (the layers of eq. 14's
    MADE; see the module docstring).

    Args:
        d: the dimensions of z.
        hidden: the MADE's hidden width.
        reverse: order the dimensions d … 1 (alternate steps reverse).
        name: prefix of the layers' names.
    """

    def __init__(self, d: int, hidden: int, reverse: bool, name: str):
        in_mask, out_mask = made_masks(d, hidden, reverse)
        self.d = d
        self.inputs = MaskedDense(in_mask, name=f"{name}_in", dtype="float32")
        self.context = layers.Dense(hidden, name=f"{name}_context", dtype="float32")
        # The output layer starts at zero (m = 0, σ = sigmoid(2)): near the identity.
        self.outputs = MaskedDense(np.concatenate([out_mask, out_mask], axis=1), kernel_initializer="zeros",
                                   name=f"{name}_out", dtype="float32")

    def shift_and_gate(self, z, context):
        """(m, σ) float32 [N, d] for z [N, d] and context [N, C]: m_j and σ_j depend on
        z_<j (in this step's order) and on the context."""
        m, s = self._raw(z, context)
        return m, ops.sigmoid(s)

    def _raw(self, z, context):
        hidden = ops.elu(self.inputs(z) + self.context(context))
        m, s = ops.split(self.outputs(hidden), 2, axis=-1)
        return m, s + 2.0

    def __call__(self, z, context):
        """z [N, d] -> (z' [N, d], log |det ∂z'/∂z| [N] = Σ_j log σ_j)."""
        m, s = self._raw(z, context)
        gate = ops.sigmoid(s)
        return gate * z + (1.0 - gate) * m, ops.sum(ops.log_sigmoid(s), axis=-1)

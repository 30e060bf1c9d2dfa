"""The one training step and evaluation step that every Keras model family shares.

A family implements :meth:`FamilyModel.losses_for`, which returns its **named terms**: a
dict of float32 scalars (batch means, nats per image) holding ``loss`` (what the
gradient descends) and the family's own terms (``reconstruction``, ``kl``,
``kl_weight``, β-TCVAE's ``tc``, ...). :meth:`FamilyModel.apply_step` and
:meth:`FamilyModel.evaluate_step` turn them into the metrics that ``fit``, the
multi-worker loop (``tfvae.training.multiworker``), ``metrics.csv`` and TensorBoard show,
whatever the family and the strategy (pythae's ``ModelOutput`` is the pattern).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def split_batch(data):
    """A pipeline element -> (x, eps, labels); eps and labels may be None.

    Training and validation batches are ``x``, ``(x, eps)`` or ``(x, eps, labels)``;
    other held-out batches ``x`` or ``(x, labels)`` (labels one-hot float32 [B, C], eps
    float32 [B, S, D]).
    """
    if not isinstance(data, (tuple, list)):
        return data, None, None
    if len(data) == 3:
        return data[0], data[1], data[2]
    if len(data) == 2 and data[1].shape.rank == 3:
        return data[0], data[1], None
    return data[0], None, data[1]


def replica_share(x):
    """This replica's share of the global batch, b_replica / b_global (1 on one device).

    The optimizer sums gradients over replicas (Keras's all-reduce), so weighting each
    replica's batch-mean loss by its share makes the summed gradient the gradient of the
    global batch mean, also when a last, partial batch splits unevenly."""
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    if replicas == 1:
        return tf.constant(1.0, tf.float32)
    b = tf.cast(tf.shape(x)[0], tf.float32)
    return b / tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, b)


class FamilyModel(keras.Model):
    """Base of the Keras model families: metric trackers and the shared steps.

    Subclasses set :attr:`metric_names` (the named terms shown per epoch, ``loss`` first),
    :attr:`checkpoint_monitor` (the validation metric that picks the best checkpoint) and
    implement :meth:`losses_for`.
    """

    metric_names = ("loss",)
    checkpoint_monitor = "val_loss"

    def _make_trackers(self):
        self.trackers = {name: keras.metrics.Mean(name=name) for name in self.metric_names}

    @property
    def metrics(self):
        # Returned here so that Keras resets the trackers at the start of each epoch.
        return list(self.trackers.values())

    def losses_for(self, x, labels=None, eps=None, training=False, weight=None) -> dict:
        """The named terms on a batch: ``loss`` and the family's terms, float32 scalars
        (batch means, nats per image).

        Args:
            x: images float32 [B, H, W, C].
            labels: one-hot float32 [B, C] (conditional families) or None.
            eps: the pipeline's noise float32 [B, S, D] or None (drawn by the model).
            weight: the KL weight to use (validation of the ``iwae`` objective passes 1.0);
                None: the family's own (β after any warm-up).
        """
        raise NotImplementedError

    def validation_weight(self):
        """The ``weight`` :meth:`evaluate_step` passes to :meth:`losses_for` (None: the family's own)."""
        return None

    def fit_artifacts(self, data, cfg, run_dir) -> None:
        """After training, with the best checkpoint's weights loaded: fit what the family
        derives from the trained networks and keeps beside the checkpoints (an autoencoder's
        Gaussian of its codes, a VQ-VAE's prior). Default: nothing."""

    def restore_artifacts(self, run_dir) -> None:
        """When a run is loaded: read back what :meth:`fit_artifacts` wrote. Default: nothing."""

    def export_archives(self, batch=None):
        """The family's own SavedModel archives for ``export`` ({component: ExportArchive}),
        or None for the one-layer layout of :mod:`tfvae.export` (a decoder of z)."""
        return None

    def _named(self, terms: dict) -> dict:
        return {name: terms[name] for name in self.metric_names}

    def apply_step(self, data):
        """The one training step, whatever the family and the strategy: the named terms on
        a (per-replica) batch, the gradient of ``loss``, one optimizer update. ``fit`` calls
        it through :meth:`train_step`; the multi-worker loop calls it through ``strategy.run``.

        Returns:
            Dict of float32 scalars keyed by :attr:`metric_names`, means over this replica's
            images in nats per image.
        """
        x, eps, labels = split_batch(data)
        with tf.GradientTape() as tape:
            terms = self.losses_for(x, labels, eps=eps, training=True)
            scaled = self.optimizer.scale_loss(terms["loss"] * replica_share(x))  # loss scaling: mixed_float16 only
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._named(terms)

    def evaluate_step(self, data):
        """Validation on a held-out batch (no update): the dict of :meth:`apply_step`, with
        the KL weight of :meth:`validation_weight`."""
        x, eps, labels = split_batch(data)
        return self._named(self.losses_for(x, labels, eps=eps, training=False, weight=self.validation_weight()))

    def _update(self, values: dict) -> dict:
        for name, value in values.items():
            self.trackers[name].update_state(value)
        return {name: t.result() for name, t in self.trackers.items()}

    def train_step(self, data):
        return self._update(self.apply_step(data))

    def test_step(self, data):
        return self._update(self.evaluate_step(data))

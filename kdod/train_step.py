"""The one per-batch training step: losses, gradients, update.

Keras `fit` calls `train_batch` from `Detector.train_step` and `Distiller.train_step`; the
custom `tf.distribute` loop of `kdod.train_lib` calls it through `strategy.run` (Keras `fit`
fails under MultiWorkerMirroredStrategy, keras-team/keras#20585), so the training logic exists
once.

Under a strategy each replica computes the losses of its share of the global batch (their
normalizers, such as the number of positive anchors, are the replica's own, as in the TF OD
API and KerasCV); Keras's optimizer sums the replicas' gradients, so each replica
differentiates its loss divided by the number of replicas: the update follows the mean of the
replicas' losses, the single-device loss when the shares hold alike images. `clipnorm` clips
each replica's share before the sum.
"""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf


def train_batch(model: keras.Model, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """One optimisation step of `model.loss_terms` on `batch`; returns the loss terms."""
    with tf.GradientTape() as tape:
        outputs = model(batch["image"], training=True)
        terms = model.loss_terms(batch, outputs)
        total = terms["total"]
        if model.losses:  # Regularisation losses of layers, if any were configured.
            total += tf.add_n(model.losses)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:  # Keras sums the replicas' gradients (module docstring).
            total /= replicas
    variables = model.trainable_variables
    gradients = tape.gradient(total, variables)
    model.optimizer.apply_gradients(zip(gradients, variables))
    return {**terms, "learning_rate": _current_learning_rate(model.optimizer)}


def _current_learning_rate(optimizer: keras.optimizers.Optimizer) -> tf.Tensor:
    rate = optimizer.learning_rate
    return tf.convert_to_tensor(rate(optimizer.iterations) if callable(rate) else rate)

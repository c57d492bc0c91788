"""The one per-batch training step: losses, gradients, update.

Keras `fit` calls `train_batch` from `Detector.train_step` and `Distiller.train_step`; a custom
`tf.distribute` loop can call it through `strategy.run` (Keras `fit` fails under
MultiWorkerMirroredStrategy, keras-team/keras#20585), so the training logic exists once.
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
    variables = model.trainable_variables
    gradients = tape.gradient(total, variables)
    model.optimizer.apply_gradients(zip(gradients, variables))
    return {**terms, "learning_rate": _current_learning_rate(model.optimizer)}


def _current_learning_rate(optimizer: keras.optimizers.Optimizer) -> tf.Tensor:
    rate = optimizer.learning_rate
    return tf.convert_to_tensor(rate(optimizer.iterations) if callable(rate) else rate)

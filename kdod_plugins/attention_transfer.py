"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017) as a kdod plugin loss.

The template for a third-party loss: a module that registers with `kdod.register_loss`,
named by an entry point in the group `kdod.plugins` (see pyproject.toml). The original
project's "attention" term compared weight tensors; this compares what the networks
attend to: the spatial maps mean_c |F|^p of matching neck levels, L2-normalized.
"""

from __future__ import annotations

import tensorflow as tf

import kdod


def attention_map(features: tf.Tensor, p: float) -> tf.Tensor:
    """[B, H, W, C] -> [B, H*W]: channel mean of |F|^p, L2-normalized per image."""
    attention = tf.reduce_mean(tf.pow(tf.abs(features), p), axis=-1)
    return tf.math.l2_normalize(tf.reshape(attention, [tf.shape(attention)[0], -1]), axis=-1)


@kdod.register_loss("attention_transfer")
class AttentionTransfer:
    """Mean over levels of ||a_student - a_teacher||_2 between attention maps.

    Channel counts may differ (no adapter needed); spatial sizes must match.

    Args:
        p: the exponent of |F| (2 in the paper).
        levels: neck levels to compare; default all levels both models have.
    """

    def __init__(self, p: float = 2.0, levels: tuple[int, ...] | None = None):
        self.p, self.levels = p, levels

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        student, teacher = student_out["features"], teacher_out["features"]
        levels = self.levels or sorted(set(student) & set(teacher))
        distances = []
        for level in levels:
            if student[level].shape[1:3] != teacher[level].shape[1:3]:
                raise ValueError(f"attention_transfer: level {level} differs in size between "
                                 f"student {student[level].shape[1:3]} and teacher "
                                 f"{teacher[level].shape[1:3]}.")
            difference = (attention_map(student[level], self.p)
                          - attention_map(teacher[level], self.p))
            distances.append(tf.reduce_mean(tf.norm(difference, axis=-1)))
        return tf.add_n(distances) / len(distances)

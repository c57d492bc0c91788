"""DIST (Huang et al., NeurIPS 2022, "Knowledge Distillation from A Stronger Teacher"):
imitate the relations between predictions, not their values.

On the class probabilities Y = sigmoid(cls_logits / tau) [B, A, C] of both models, with
rho the Pearson correlation:

    inter-class  1 - mean_{b,a} rho(Y_S[b, a, :], Y_T[b, a, :])   (over the classes of an anchor)
    intra-class  1 - mean_{b,c} rho(Y_S[b, :, c], Y_T[b, :, c])   (over the anchors of a class)
    L = tau^2 * (beta * inter + gamma * intra)

The paper takes softmax probabilities over the classes of an image and the intra-class
relation over the images of a batch; a detector's instances are its anchors, with sigmoid
class scores, so here the intra-class relation runs over each image's anchors. With a single
class (plates) the inter-class correlation has one value per anchor and is undefined: only
the intra-class term applies. The paper's defaults are beta = gamma = tau = 1.
"""

from __future__ import annotations

import tensorflow as tf

from kdod.config import check_number
from kdod.registry import register_loss

_EPSILON = 1e-8


def pearson(a: tf.Tensor, b: tf.Tensor, axis: int) -> tf.Tensor:
    """The Pearson correlation of a and b along `axis` (0 where either is constant)."""
    a = a - tf.reduce_mean(a, axis=axis, keepdims=True)
    b = b - tf.reduce_mean(b, axis=axis, keepdims=True)
    return tf.reduce_sum(a * b, axis=axis) / (tf.norm(a, axis=axis) * tf.norm(b, axis=axis)
                                              + _EPSILON)


@register_loss("dist")
class DistRelations:
    """1 - Pearson correlation between the two models' class probabilities, across classes
    (per anchor) and across anchors (per image and class).

    Args:
        temperature: tau, dividing both models' logits.
        beta: weight of the inter-class relation (unused with one class).
        gamma: weight of the intra-class relation.
    """

    anchor_level = True
    teacher_outputs = ("cls_logits",)

    def __init__(self, temperature: float = 1.0, beta: float = 1.0, gamma: float = 1.0):
        check_number("dist.temperature", temperature, above=0)
        check_number("dist.beta", beta, at_least=0)
        check_number("dist.gamma", gamma, at_least=0)
        self.temperature, self.beta, self.gamma = temperature, beta, gamma

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        student = tf.sigmoid(tf.cast(student_out["cls_logits"], tf.float32) / self.temperature)
        teacher = tf.sigmoid(tf.stop_gradient(tf.cast(teacher_out["cls_logits"], tf.float32))
                             / self.temperature)
        loss = self.gamma * (1 - tf.reduce_mean(pearson(student, teacher, axis=1)))
        if student.shape[-1] > 1:
            loss += self.beta * (1 - tf.reduce_mean(pearson(student, teacher, axis=2)))
        return self.temperature ** 2 * loss

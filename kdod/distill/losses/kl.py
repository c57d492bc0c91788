"""KL divergence on classification logits, softened by a temperature (Hinton et al. 2015).

Scaled by T^2 so its gradients keep their size as T changes. The original project
omitted that factor.
"""

from __future__ import annotations

import tensorflow as tf

from kdod.registry import register_loss

_EPSILON = 1e-7
NORMALIZERS = ("weights", "positives")


def sigmoid_kl(teacher_logits: tf.Tensor, student_logits: tf.Tensor) -> tf.Tensor:
    """Per-element KL(Bernoulli(sigmoid(t)) || Bernoulli(sigmoid(s))), for per-class sigmoids."""
    p = tf.sigmoid(teacher_logits)
    # log q = -softplus(-s), log(1 - q) = -softplus(s): stable for large logits.
    return (p * (tf.math.log(p + _EPSILON) + tf.nn.softplus(-student_logits))
            + (1 - p) * (tf.math.log(1 - p + _EPSILON) + tf.nn.softplus(student_logits)))


def softmax_kl(teacher_logits: tf.Tensor, student_logits: tf.Tensor) -> tf.Tensor:
    """Per-anchor KL between softmaxes over [background (logit 0), classes...]."""
    background = tf.zeros_like(teacher_logits[..., :1])
    teacher = tf.concat([background, teacher_logits], axis=-1)
    student = tf.concat([background, student_logits], axis=-1)
    p = tf.nn.softmax(teacher)
    return tf.reduce_sum(p * (tf.nn.log_softmax(teacher) - tf.nn.log_softmax(student)), axis=-1)


@register_loss("kl_logits")
class KLLogits:
    """T^2 * KL(teacher_T || student_T) on cls_logits, averaged over (weighted) anchors.

    Args:
        temperature: T; both logit sets are divided by it.
        form: "sigmoid" (per-class binary KL, matching sigmoid detectors) or "softmax"
            (over background + classes, background logit fixed at 0).
        weight_by_teacher: weight each anchor by the teacher's top class probability, so the
            thousands of easy background anchors do not drown the signal.
        normalizer: what the weighted sum over anchors is divided by: "weights" (their sum,
            a weighted mean) or "positives" (the student's positive anchors, as the focal
            loss is normalized, so the two losses have comparable gradients per object).
    """

    anchor_level = True
    teacher_outputs = ("cls_logits",)

    def __init__(self, temperature: float = 2.0, form: str = "sigmoid",
                 weight_by_teacher: bool = True, normalizer: str = "weights"):
        if normalizer not in NORMALIZERS:
            raise ValueError(f"kl_logits.normalizer must be one of {NORMALIZERS}, got "
                             f"{normalizer!r}.")
        if form not in ("sigmoid", "softmax"):
            raise ValueError(f"kl_logits.form must be 'sigmoid' or 'softmax', got {form!r}.")
        if temperature <= 0:
            raise ValueError(f"kl_logits.temperature must be > 0, got {temperature}.")
        self.temperature, self.form, self.weight_by_teacher = temperature, form, weight_by_teacher
        self.normalizer = normalizer

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        t = tf.cast(teacher_out["cls_logits"], tf.float32)
        s = tf.cast(student_out["cls_logits"], tf.float32)
        temperature = self.temperature
        if self.form == "sigmoid":
            per_anchor = tf.reduce_sum(sigmoid_kl(t / temperature, s / temperature), axis=-1)
        else:
            per_anchor = softmax_kl(t / temperature, s / temperature)
        if self.weight_by_teacher:
            weights = tf.reduce_max(tf.sigmoid(t), axis=-1)
        else:
            weights = tf.ones_like(per_anchor)
        if self.normalizer == "weights":
            count = tf.maximum(tf.reduce_sum(weights), 1e-6)
        else:
            count = tf.maximum(tf.reduce_sum(batch["targets"]["num_positives"]), 1.0)
        return temperature ** 2 * tf.reduce_sum(per_anchor * weights) / count

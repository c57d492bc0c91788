"""Channel-wise distillation (Shu et al., ICCV 2021, "Channel-wise Knowledge Distillation for
Dense Prediction").

Each channel of a neck level is turned into a distribution over the H*W positions, and the
student's distributions imitate the teacher's:

    phi(F)_c = softmax_{hw}(F_{hw,c} / T)
    L = T^2 / (B * C) * sum_{b,c} sum_{hw} phi(F_T)_{hw,c} * (log phi(F_T)_{hw,c}
                                                               - log phi(F_S)_{hw,c})

that is T^2 * KL(teacher || student) averaged over images and channels (as the authors'
implementation normalizes), then over levels. The student's features pass through a 1x1
adapter where its channel count differs from the teacher's.
"""

from __future__ import annotations

import tensorflow as tf

from kdod.config import check_number
from kdod.distill.losses.levels import NeckFeatureLoss
from kdod.registry import register_loss


def spatial_log_softmax(features: tf.Tensor, temperature: float) -> tf.Tensor:
    """[B, H, W, C] -> [B, H*W, C]: per image and channel, log softmax over the positions."""
    flat = tf.reshape(features, [tf.shape(features)[0], -1, features.shape[-1]])
    return tf.nn.log_softmax(flat / temperature, axis=1)


@register_loss("cwd")
class ChannelWiseDistillation(NeckFeatureLoss):
    """T^2 * KL between the teacher's and the student's per-channel spatial softmaxes.

    Args:
        temperature: T. mmrazor's detection configs use 1; larger values weigh the
            low-activation positions of each channel more.
        levels: neck levels to distill; default all levels both models have.
    """

    name = "cwd"

    def __init__(self, temperature: float = 1.0, levels: tuple[int, ...] | None = None):
        check_number("cwd.temperature", temperature, above=0)
        super().__init__(levels)
        self.temperature = temperature

    def level_loss(self, level: int, student: tf.Tensor, teacher: tf.Tensor,
                   batch) -> tf.Tensor:
        log_p_teacher = spatial_log_softmax(teacher, self.temperature)
        log_p_student = spatial_log_softmax(student, self.temperature)
        kl = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=1)
        return self.temperature ** 2 * tf.reduce_mean(kl)

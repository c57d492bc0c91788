"""Masked generative distillation (Yang et al., ECCV 2022, "Masked Generative Distillation").

At each neck level the student's features (through a 1x1 adapter where its channels differ
from the teacher's) lose a random set of positions, and a small generator must rebuild the
teacher's full features from what is left:

    M_hw ~ Bernoulli(1 - mask_ratio)          (one draw per image and position, all channels)
    G    = Conv3x3 -> ReLU -> Conv3x3         (teacher's channels; trained, never exported)
    L    = mean_{b,hw,c} (G(M * F_S) - F_T)^2

averaged over levels. The authors sum over channels and positions and divide by the batch
size, with alpha_mgd = 2e-5 for detection on 256-channel COCO maps; a mean is order 1 on
kdod's small maps, and the weight in DistillerConfig.losses plays alpha's part. Their
detection setting drops positions with probability lambda_mgd = 0.65, the default here.

The mask comes from a keras.random.SeedGenerator: a given `seed` gives the same sequence of
masks, and each call draws a new one (also inside a compiled training step).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from kdod.config import check_number
from kdod.distill.losses.levels import NeckFeatureLoss
from kdod.registry import register_loss


def generator(channels: int, name: str) -> keras.Sequential:
    """MGD's generator: two 3x3 convolutions with a ReLU between them."""
    return keras.Sequential([keras.layers.Conv2D(channels, 3, padding="same"),
                             keras.layers.ReLU(),
                             keras.layers.Conv2D(channels, 3, padding="same")], name=name)


@register_loss("mgd")
class MaskedGenerativeDistillation(NeckFeatureLoss):
    """The student's randomly masked features, through a generator, imitate the teacher's.

    Args:
        mask_ratio: the probability that a position is masked (0.65 in the paper's detection
            experiments).
        seed: seed of the masks; None draws one (keras.utils.set_random_seed fixes it).
        levels: neck levels to distill; default all levels both models have.
    """

    name = "mgd"

    def __init__(self, mask_ratio: float = 0.65, seed: int | None = None,
                 levels: tuple[int, ...] | None = None):
        check_number("mgd.mask_ratio", mask_ratio, at_least=0, at_most=1)
        super().__init__(levels)
        self.mask_ratio = mask_ratio
        self.seed_generator = keras.random.SeedGenerator(seed)

    def level_layer(self, level: int, channels: int) -> keras.Sequential:
        return generator(channels, name=f"mgd_generator_p{level}")

    def random_mask(self, features: tf.Tensor) -> tf.Tensor:
        """[B, H, W, 1]: 0 with probability mask_ratio, else 1."""
        shape = tf.concat([tf.shape(features)[:3], [1]], axis=0)
        draws = keras.random.uniform(shape, seed=self.seed_generator)
        return tf.cast(draws >= self.mask_ratio, features.dtype)

    def level_loss(self, level: int, student: tf.Tensor, teacher: tf.Tensor,
                   batch) -> tf.Tensor:
        rebuilt = self.layer_by_level[level](student * self.random_mask(student))
        return tf.reduce_mean(tf.square(rebuilt - teacher))

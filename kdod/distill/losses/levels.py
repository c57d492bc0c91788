"""What the losses on neck features share: the levels compared and the student's adapters.

Teacher and student may differ in backbone and channels, not in the spatial size of a level
they compare: where channel counts differ, a 1x1 convolution (trained with the student, never
exported) takes the student's features to the teacher's channels before they are compared.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def matched_levels(loss_name: str, student: dict, teacher: dict,
                   levels: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """`levels` (default: all that both models have), each of the same H x W in both models."""
    levels = tuple(levels or sorted(set(student) & set(teacher)))
    for level in levels:
        if level not in student or level not in teacher:
            raise ValueError(f"{loss_name}: level {level} is missing (student has "
                             f"{sorted(student)}, teacher {sorted(teacher)}).")
        s_shape, t_shape = student[level].shape, teacher[level].shape
        if s_shape[1:3] != t_shape[1:3]:
            raise ValueError(
                f"{loss_name}: level {level} is {s_shape[1]}x{s_shape[2]} in the student but "
                f"{t_shape[1]}x{t_shape[2]} in the teacher; give both the same input size.")
    return levels


class NeckFeatureLoss:
    """Base of the losses between the two models' neck features, level by level.

    Subclasses set `name` (the registered name, for messages), define `level_loss` and may
    define `level_layer`; the loss is the mean of `level_loss` over levels.
    The papers sum over the FPN levels; a mean keeps the weight in DistillerConfig.losses
    independent of how many levels the neck has.
    """

    name: str
    teacher_outputs = ("features",)

    def __init__(self, levels: tuple[int, ...] | None = None):
        self.levels = levels
        self.adapters: list[keras.layers.Layer] = []
        self._adapter_by_level: dict[int, keras.layers.Layer] = {}
        self.layer_by_level: dict[int, keras.layers.Layer] = {}

    def build(self, student_out, teacher_out) -> None:
        """Checks level sizes, makes a 1x1 adapter where channel counts differ and the loss's
        own layers (`level_layer`)."""
        student, teacher = student_out["features"], teacher_out["features"]
        self.levels = matched_levels(self.name, student, teacher, self.levels)
        for level in self.levels:
            channels = teacher[level].shape[-1]
            if student[level].shape[-1] != channels:
                adapter = keras.layers.Conv2D(channels, 1, name=self.adapter_name(level))
                self._adapter_by_level[level] = self._built(adapter, student[level])
            layer = self.level_layer(level, channels)
            if layer is not None:
                self.layer_by_level[level] = self._built(layer, teacher[level])

    def _built(self, layer: keras.layers.Layer, features: tf.Tensor) -> keras.layers.Layer:
        """`layer` with its weights made (called once on `features`), trained with the student."""
        layer(features)
        self.adapters.append(layer)
        return layer

    def level_layer(self, level: int, channels: int) -> keras.layers.Layer | None:
        """A trainable layer the loss uses at `level`, on the teacher's channels; None: none."""
        return None

    def adapter_name(self, level: int) -> str:
        return f"{self.name}_adapter_p{level}"

    def student_features(self, student_out, level: int) -> tf.Tensor:
        """The student's features at `level`, in the teacher's channels."""
        features = student_out["features"][level]
        adapter = self._adapter_by_level.get(level)
        return adapter(features) if adapter else features

    @staticmethod
    def teacher_features(teacher_out, level: int) -> tf.Tensor:
        """The teacher's features at `level`: a target, so no gradient reaches the teacher."""
        return tf.stop_gradient(teacher_out["features"][level])

    def level_loss(self, level: int, student: tf.Tensor, teacher: tf.Tensor,
                   batch) -> tf.Tensor:
        """The loss at one level between [B, H, W, C] features (student already adapted)."""
        raise NotImplementedError

    def __call__(self, student_out, teacher_out, batch) -> tf.Tensor:
        losses = [self.level_loss(level, self.student_features(student_out, level),
                                  self.teacher_features(teacher_out, level), batch)
                  for level in self.levels]
        return tf.add_n(losses) / len(losses)

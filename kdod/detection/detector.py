"""The single-stage, anchor-based detector (SSD-FPN / RetinaNet family) in Keras 3.

    backbone {stride: C} -> neck {level: P} -> shared class and box heads
    -> {"cls_logits": [B, A, C], "box_regression": [B, A, 4],
        "features": {level: P}, "backbone_features": {stride: C}}

With ``DetectorConfig.box_bins = n > 0`` the box head predicts, per anchor and side, logits
over n + 1 side distances (Li et al., "Generalized Focal Loss", NeurIPS 2020), added to the
dict as ``"box_distribution": [B, A, 4, n + 1]``; ``box_regression`` is then the codes of the
expected distances, computed in the network, so everything that decodes boxes is unchanged.

Teacher and student are both Detectors; distillation losses pick what they need
from that dict. Images go in as [B, S, S, 3] RGB in [0, 255] (uint8 or float).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import gin
import keras
import tensorflow as tf

from kdod import registry, train_step
from kdod.config import ConfigError, check_integer, check_number
from kdod.detection import anchors as anchors_lib
from kdod.detection import heads, losses, matcher, postprocess


def build_network(config: DetectorConfig) -> keras.Model:
    """The functional network: images -> the output dict of the module docstring."""
    image_size, num_classes, anchor_config = (config.image_size, config.num_classes,
                                              config.anchor_config)
    images = keras.Input((image_size, image_size, 3), name="images")
    backbone = registry.BACKBONES.get(config.backbone)(input_shape=(image_size, image_size, 3))
    backbone_features = backbone(images)
    pyramid = registry.NECKS.get(config.neck)(backbone_features, min_level=anchor_config.min_level,
                                       max_level=anchor_config.max_level)
    filters = pyramid[anchor_config.min_level].shape[-1]
    num_anchors = anchor_config.num_anchors_per_location
    class_head = heads.class_head(config.head_convs, filters, num_anchors, num_classes,
                                  config.separable_head)
    box_head = heads.box_head(config.head_convs, filters, num_anchors, config.separable_head,
                              config.box_bins)
    levels = sorted(pyramid)
    cls_logits = keras.layers.Concatenate(axis=1, name="cls_logits")(
        [keras.layers.Reshape((-1, num_classes))(class_head(pyramid[lv])) for lv in levels])
    box_outputs = _box_outputs(box_head, [pyramid[lv] for lv in levels], config.box_bins)
    outputs = {"cls_logits": cls_logits, "box_regression": box_outputs.pop("box_regression"),
               "features": pyramid, "backbone_features": backbone_features, **box_outputs}
    network = keras.Model(images, outputs, name=f"{config.backbone}_{config.neck}")
    for layer in _all_layers(network):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = config.batch_norm_momentum
    return network


def _box_outputs(box_head: heads.SharedHead, features: list, bins: int) -> dict:
    """box_regression [B, A, 4], plus box_distribution [B, A, 4, bins + 1] when bins > 0."""
    if not bins:
        return {"box_regression": keras.layers.Concatenate(axis=1, name="box_regression")(
            [keras.layers.Reshape((-1, 4))(box_head(feature)) for feature in features])}
    distribution = keras.layers.Concatenate(axis=1, name="box_distribution")(
        [keras.layers.Reshape((-1, 4, bins + 1))(box_head(feature)) for feature in features])
    return {"box_regression": heads.SideDistributionToCodes(name="box_regression")(distribution),
            "box_distribution": distribution}


def _all_layers(model: keras.Model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


@gin.configurable
@dataclasses.dataclass(frozen=True)
class DetectorConfig:
    """Architecture of a Detector (gin: ``DetectorConfig.backbone = "mobilenet_v2"``).

    Attributes:
        backbone: registered backbone name (kdod.BACKBONES.list()); configure it
            in gin under that name, e.g. ``mobilenet_v2.alpha = 0.5``.
        neck: registered neck name ("fpn", "fpn_lite"), configured the same way.
        image_size: side of the square input.
        num_classes: object classes (1: plate).
        anchor_config: anchors; default AnchorConfig() (gin-configurable).
        head_convs: conv layers in each head tower.
        separable_head: depthwise-separable head convs (SSD FPNLite style).
        batch_norm_momentum: momentum of every BatchNormalization layer. keras.applications
            uses 0.999, whose moving statistics lag far behind a network trained for a few
            thousand steps from scratch (inference then sees the wrong statistics).
        box_bins: 0, the box head regresses the 4 box codes directly; n > 0, it predicts a
            distribution over n + 1 distances per box side (GFL; GFL and LD use n = 16), which
            the `ld` distillation loss and the detection loss's `dfl_weight` need.
    """

    backbone: str = "tiny_cnn"
    neck: str = "fpn_lite"
    image_size: int = 320
    num_classes: int = 1
    anchor_config: anchors_lib.AnchorConfig = dataclasses.field(
        default_factory=anchors_lib.AnchorConfig)
    head_convs: int = 4
    separable_head: bool = False
    batch_norm_momentum: float = 0.99
    box_bins: int = 0

    def __post_init__(self):
        check_integer("DetectorConfig.image_size", self.image_size)
        check_integer("DetectorConfig.num_classes", self.num_classes)
        check_integer("DetectorConfig.head_convs", self.head_convs, minimum=0)
        check_number("DetectorConfig.batch_norm_momentum", self.batch_norm_momentum,
                     at_least=0, below=1)
        check_integer("DetectorConfig.box_bins", self.box_bins, minimum=0)


class Detector(keras.Model):
    """A detector with its anchors, its training loss and its post-processing."""

    def __init__(self, config: DetectorConfig | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config or DetectorConfig()
        self.image_size = self.config.image_size
        self.num_classes = self.config.num_classes
        self.network = build_network(self.config)
        self.anchors = anchors_lib.generate_anchors(self.image_size, self.config.anchor_config)
        predicted = self.network.output["cls_logits"].shape[1]
        if predicted != self.anchors.shape[0]:
            raise ConfigError(f"The heads predict {predicted} anchors but the anchor config "
                              f"gives {self.anchors.shape[0]}: the neck levels and "
                              f"AnchorConfig.min_level/max_level disagree.")

    def call(self, images, training: bool = False) -> dict:
        return self.network(tf.cast(images, tf.float32), training=training)

    def targets(self, batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The batch's boxes matched to this detector's anchors (see matcher.encode_targets)."""
        return matcher.encode_targets(self.anchors, batch["boxes"], batch["labels"],
                                      self.num_classes)

    def loss_terms(self, batch: Mapping[str, tf.Tensor], outputs: Mapping,
                   targets: Mapping[str, tf.Tensor] | None = None) -> dict[str, tf.Tensor]:
        """The detection loss of `outputs` against the batch's boxes: cls_loss, box_loss, total."""
        targets = self.targets(batch) if targets is None else targets
        return losses.detection_loss(outputs, targets, self.anchors)

    def exported_detector(self) -> Detector:
        """What is exported and evaluated (a Distiller answers with its student).

        A method, not a property: Keras's weight saving walks properties, and one
        returning the model itself would recurse forever.
        """
        return self

    def train_step(self, batch):
        return train_step.train_batch(self, batch)  # The step shared with tf.distribute loops.

    def detect(self, images) -> dict[str, tf.Tensor]:
        """Boxes (normalized to the input), scores, classes, num_detections after NMS."""
        outputs = self(images, training=False)
        return postprocess.postprocess(outputs["cls_logits"], outputs["box_regression"],
                                       self.anchors)

"""detector: recipe training speed, latency and head cost, and the small student's AP50.

    python -m kdod.benchmark detector
"""

from __future__ import annotations

import gin
import keras
import tensorflow as tf

from kdod import registry, train_lib, train_step
from kdod.benchmarks import targets
from kdod.benchmarks.common import BenchmarkOptions, parse_recipe, random_batch, recipe
from kdod.detection.detector import Detector, DetectorConfig
from kdod.experiment import latency_ms, train_and_evaluate
from kdod.timing import seconds_per_call

BATCH_SIZES = {"teacher_resnet50_fpn_640": 4, "student_mobilenet_v2_fpnlite_320": 8,
               "student_small": 16}  # Recipe -> training batch timed.


def recipe_speed(gin_file: str, batch_size: int = 8) -> dict:
    """Training images/s, batch-1 inference ms and parameters of a recipe's detector.

    Weights are random (the speed does not depend on them, and ImageNet is offline here).
    """
    parse_recipe(gin_file)
    detector_config = DetectorConfig()
    gin.bind_parameter(f"{detector_config.backbone}.weights", None)
    model = Detector(detector_config)
    model.compile(optimizer=train_lib.make_optimizer(total_steps=1000))
    batch = random_batch(model.image_size, batch_size)
    step_s = seconds_per_call(tf.function(lambda: train_step.train_batch(model, batch)), 5)
    results = {"parameters": model.count_params(), "image_size": model.image_size,
               "train_images_per_s": batch_size / step_s,
               "inference_ms_batch_1": latency_ms(model, 20)}
    backbone_s = _backbone_step_seconds(detector_config.backbone, model.image_size, batch)
    results["head_cost_ratio"] = (step_s - backbone_s) / backbone_s
    keras.backend.clear_session()
    return results


def _backbone_step_seconds(backbone_name: str, image_size: int, batch: dict) -> float:
    """The bare backbone's forward + backward with the same optimizer: the head cost's base."""
    backbone = registry.BACKBONES.get(backbone_name)(input_shape=(image_size, image_size, 3))
    optimizer = train_lib.make_optimizer(total_steps=1000)

    @tf.function
    def backbone_step():
        with tf.GradientTape() as tape:
            features = backbone(batch["image"], training=True)
            loss = tf.add_n([tf.reduce_mean(f) for f in features.values()])
        optimizer.apply_gradients(zip(tape.gradient(loss, backbone.trainable_variables),
                                      backbone.trainable_variables))

    return seconds_per_call(backbone_step, 5)


def run(options: BenchmarkOptions) -> dict:
    speed = {name: recipe_speed(recipe(f"{name}.gin"), batch)
             for name, batch in BATCH_SIZES.items()}
    small = train_and_evaluate([recipe("student_small.gin")], [options.data_binding],
                               options.runs_dir / "student_small", strategy=options.strategy)
    return {"speed": speed, "student_small_synthetic_test": small,
            **targets.check("detector", {"student_small_AP50": small["AP50"]})}

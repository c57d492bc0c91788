r"""Trains a detector described by gin files.

    python -m kdod.train --gin_file=gin/student_small.gin --model_dir=runs/student

Killed and started again with the same command, it continues from the last
checkpoint in model_dir (weights, optimizer state and step). The operative gin
config is written to model_dir/operative_config.gin.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import gin
import keras
import tensorflow as tf
from absl import flags

from kdod import config, train_lib
from kdod.data.pipeline import input_pipeline
from kdod.detection.detector import Detector


@gin.configurable(denylist=["model_dir"])
def train(model_dir: str, steps: int = 1000, checkpoint_every: int = 200, keep_checkpoints: int = 3,
          log_every: int = 20, summary_images: int = 4, seed: int = 0,
          model_fn=Detector) -> keras.Model:
    """Trains `model_fn()` for `steps` steps, resuming from model_dir's last checkpoint."""
    keras.utils.set_random_seed(seed)
    model = model_fn()
    with gin.config_scope("train"):
        dataset = input_pipeline(training=True, image_size=model.image_size, seed=seed)
    model.compile(optimizer=train_lib.make_optimizer(total_steps=steps), jit_compile=False)
    first_batch = next(iter(dataset))
    model(first_batch["image"][:1])  # Build the weights before restoring into them.
    start = train_lib.restore_latest(model, model_dir)
    config.write_operative_config(model_dir)
    if start >= steps:
        logging.info("%s is already trained to step %d.", model_dir, start)
        return model
    if start:
        logging.info("Resuming from step %d.", start)
    guard = train_lib.CheckpointAndGuard(model_dir, keep_checkpoints)
    logs = Path(model_dir) / "logs"
    callbacks = [guard, keras.callbacks.TensorBoard(str(logs), update_freq=log_every)]
    if summary_images:
        callbacks.append(train_lib.ImageSummaries(
            logs / "images", {k: v[:summary_images] for k, v in first_batch.items()}))
    model.fit(dataset, epochs=math.ceil(steps / checkpoint_every),
              steps_per_epoch=checkpoint_every, initial_epoch=start // checkpoint_every,
              callbacks=callbacks, verbose=1 if flags.FLAGS.is_parsed() else 0)
    guard.raise_if_failed()
    return model


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS.model_dir:
        raise config.ConfigError("--model_dir is required: where checkpoints and logs go.")
    config.parse_flags_gin()
    tf.get_logger().setLevel("ERROR")
    train(flags.FLAGS.model_dir)


if __name__ == "__main__":
    config.run(main)

"""Making a teacher-output cache (kdod.data.cache) for the distillation recipe of the gin
config: the recipe's Distiller and training pipeline, the teacher run once per batch."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator
from pathlib import Path

import gin
import keras
import tensorflow as tf

from kdod import config, train_lib
from kdod.data import augment, cache
from kdod.data.pipeline import input_pipeline
from kdod.distill.distiller import Distiller, DistillerConfig, build_distiller, expected_manifest


def train_setting(name: str):
    """The value of `train.<name>` in the gin config, or train's default."""
    try:
        return gin.query_parameter(f"train.{name}")
    except ValueError:  # Not bound.
        return inspect.signature(train_lib.train).parameters[name].default


def make_cache(output: str | Path, teacher_dir: str | None = None, examples: int | None = None,
               seed: int | None = None, examples_per_shard: int = 256,
               verbose: bool = True) -> dict:
    """Writes the cache of the gin config's distillation to `output`; returns its manifest.

    `examples` defaults to what training reads (train.steps x the batch size), `seed` (of the
    augmentation) to train.seed; `teacher_dir` replaces DistillerConfig.teacher_dir.
    """
    seed = train_setting("seed") if seed is None else seed
    # Seeded as train() seeds itself, so the pipeline's random ops (file order, augmentation,
    # shuffle) draw what a run of this seed draws: the cache replays that run's inputs.
    keras.utils.set_random_seed(seed)
    # The recipe may name the cache already: making it runs the teacher.
    distillation = dataclasses.replace(
        DistillerConfig(**({"teacher_dir": teacher_dir} if teacher_dir else {})),
        teacher_cache=None)
    distiller = build_distiller(distillation)
    with gin.config_scope("train"):
        dataset = input_pipeline(training=True, image_size=distiller.image_size, seed=seed,
                                 teacher_image_size=distiller.teacher_image_size)
        augmentation = repr(augment.Augmentation())  # As the pipeline makes it.
    batch_size = dataset.element_spec["image"].shape[0]
    examples = examples or train_setting("steps") * batch_size
    config.check_integer("--examples", examples)
    config.check_integer("--examples_per_shard", examples_per_shard)
    manifest = {**expected_manifest(distillation, distiller), "seed": seed,
                "augmentation": augmentation, "recipe": gin.config_str()}
    return cache.write(output, with_teacher_outputs(distiller, dataset), examples, manifest,
                       examples_per_shard, verbose)


def with_teacher_outputs(distiller: Distiller,
                         batches: tf.data.Dataset) -> Iterator[dict[str, tf.Tensor]]:
    """Each batch with the teacher's outputs the distiller's losses read (cache keys)."""
    keys = {key for needed in distiller.outputs_needed.values() for key in needed}

    @tf.function
    def add_outputs(batch):
        outputs = cache.flatten(distiller.teacher_outputs(batch.get("teacher_image",
                                                                    batch["image"])))
        return {**batch, **{key: value for key, value in outputs.items() if key in keys}}

    return (add_outputs(batch) for batch in batches)

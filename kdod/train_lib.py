"""Training: optimizers and schedules, the checkpointing and image-summary callbacks, `train`.

The per-batch step is `kdod.train_step.train_batch` (shared with `tf.distribute` loops);
checkpoint files are `kdod.checkpoints`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging

from kdod import checkpoints, config, visualize
from kdod.data.pipeline import input_pipeline
from kdod.detection.detector import Detector, DetectorConfig
from kdod.distill.distiller import DistillerConfig, build_distiller
from kdod.distill.teacher import load_run_detector
from kdod.errors import KdodError


@gin.configurable
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from `warmup_start` x peak to the peak, then cosine decay to `final`."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0,
                 warmup_start: float = 0.1, final: float = 0.0):
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps
        self.warmup_start, self.final = warmup_start, final

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = max(self.warmup_steps, 1)
        warm = self.peak * (self.warmup_start + (1 - self.warmup_start) * step / warmup)
        progress = tf.clip_by_value((step - self.warmup_steps)
                                    / max(self.total_steps - self.warmup_steps, 1), 0.0, 1.0)
        cosine = self.final + 0.5 * (self.peak - self.final) * (1 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "warmup_start": self.warmup_start,
                "final": self.final}


OPTIMIZERS = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
              "adamw": keras.optimizers.AdamW}


@gin.configurable
def make_optimizer(total_steps: int, name: str = "sgd", learning_rate: float = 0.04,
                   warmup_steps: int = 100, momentum: float = 0.9, weight_decay: float = 4e-5,
                   clipnorm: float | None = 10.0) -> keras.optimizers.Optimizer:
    """SGD (momentum), Adam or AdamW with a warm-up + cosine schedule."""
    if name not in OPTIMIZERS:
        raise config.ConfigError(f"make_optimizer.name must be one of {', '.join(OPTIMIZERS)}; "
                                 f"got {name!r}.")
    config.check_number("make_optimizer.learning_rate", learning_rate, above=0)
    config.check_integer("make_optimizer.warmup_steps", warmup_steps, minimum=0)
    config.check_number("make_optimizer.momentum", momentum, at_least=0, below=1)
    if weight_decay is not None:
        config.check_number("make_optimizer.weight_decay", weight_decay, at_least=0)
    if clipnorm is not None:
        config.check_number("make_optimizer.clipnorm", clipnorm, above=0)
    schedule = WarmupCosine(learning_rate, total_steps, min(warmup_steps, total_steps // 2))
    settings = {"learning_rate": schedule, "weight_decay": weight_decay or None,
                "clipnorm": clipnorm, **({"momentum": momentum} if name == "sgd" else {})}
    return OPTIMIZERS[name](**settings)


class NonFiniteLossError(KdodError):
    """Training produced a NaN or infinite loss."""


class CheckpointAndGuard(keras.callbacks.Callback):
    """Saves a checkpoint every epoch (= checkpoint interval), stops at `last_step` exactly (a
    resumed run's last epoch may end early) and stops on a non-finite loss.

    On a NaN the run stops before the next checkpoint, so the last checkpoint on
    disk is the last good one.
    """

    def __init__(self, model_dir: str | Path, keep: int, last_step: int, loss_key: str = "total",
                 save_network: Callable[[keras.Model], Path] | None = None):
        super().__init__()
        self.model_dir, self.keep, self.last_step = model_dir, keep, last_step
        self.loss_key = loss_key  # the logged loss that must stay finite
        # Writes the trained network alone beside the checkpoint; default: a Distiller's or
        # Detector's detector.
        self.save_network = save_network or (lambda model: checkpoints.save_detector(
            model.exported_detector(), model_dir))
        self.bad_step: int | None = None

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if not math.isfinite(float((logs or {}).get(self.loss_key, 0.0))):
            self.bad_step = step
        if self.bad_step is not None or step >= self.last_step:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.bad_step is None:
            step = int(self.model.optimizer.iterations.numpy())
            path = checkpoints.save_checkpoint(self.model, self.model_dir, step, self.keep)
            logging.info("Saved %s and %s", path, self.save_network(self.model))

    def raise_if_failed(self) -> None:
        if self.bad_step is not None:
            last = checkpoints.checkpoint_paths(self.model_dir)
            kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was saved"
            raise NonFiniteLossError(f"The loss became NaN or infinite at step {self.bad_step}; "
                                     f"{kept}. Lower the learning rate or check the data.")


class ImageSummaries(keras.callbacks.Callback):
    """Writes a few images with predicted (red) and true (green) boxes to TensorBoard."""

    def __init__(self, log_dir: str | Path, batch: Mapping[str, tf.Tensor]):
        super().__init__()
        self.writer = tf.summary.create_file_writer(str(log_dir))
        self.batch = batch

    def on_epoch_end(self, epoch, logs=None):
        detections = self.model.detect(self.batch["image"])
        pictures = []
        for i in range(len(self.batch["image"])):
            count = int(self.batch["num_boxes"][i])
            picture = visualize.draw_boxes(self.batch["image"][i].numpy(),
                                           self.batch["boxes"][i, :count].numpy())
            shown = int(detections["num_detections"][i])
            scores = detections["scores"][i, :shown].numpy()
            picture = visualize.draw_boxes(picture, detections["boxes"][i, :shown].numpy(),
                                           [f"{s:.2f}" for s in scores], visualize.PREDICTION)
            pictures.append(picture)
        with self.writer.as_default():
            tf.summary.image("detections", np.stack(pictures),
                             step=int(self.model.optimizer.iterations.numpy()),
                             max_outputs=len(pictures))
        self.writer.flush()


INIT_SCOPE = "init_from"


class WarmStartError(KdodError):
    """`train.init_from` names a run whose detector cannot initialize this one."""


def warm_start(detector: Detector, run_dir: str | Path) -> None:
    """Copies the trained network of the kdod run `run_dir` into `detector`.

    The architectures must match (backbone, neck, heads, anchors per location); the input size
    may differ (every layer is convolutional), so a 256-px synthetic run can start a 320-px real
    one. A mismatch is an error naming the settings that differ.
    """
    hint = f"python -m kdod.train --gin_file=... --model_dir={run_dir}"
    source = load_run_detector(run_dir, INIT_SCOPE, "initial detector", hint)
    ours, theirs = detector.network.weights, source.network.weights
    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
        raise WarmStartError(
            f"train.init_from = {str(run_dir)!r}: its detector's architecture differs from this "
            f"run's ({_architecture_differences(detector.config, source.config)}); warm starts "
            f"need the same backbone, neck, head and anchor settings (the input size may differ).")
    for target, value in zip(ours, theirs):
        target.assign(value)
    logging.info("Initialized the detector from %s.", Path(run_dir) / checkpoints.DETECTOR_WEIGHTS)


def _architecture_differences(ours: DetectorConfig, theirs: DetectorConfig) -> str:
    """'setting: this run vs init_from run' for the detector settings that differ."""
    differences = [f"DetectorConfig.{field.name}: {getattr(ours, field.name)!r} vs "
                   f"{getattr(theirs, field.name)!r}" for field in dataclasses.fields(ours)
                   if field.name != "image_size"
                   and getattr(ours, field.name) != getattr(theirs, field.name)]
    for component in {ours.backbone, ours.neck} & {theirs.backbone, theirs.neck}:
        mine = gin.get_bindings(component)
        with gin.config_scope(INIT_SCOPE):
            other = gin.get_bindings(component)
        differences += [f"{component}.{name}: {mine.get(name)!r} vs {other.get(name)!r}"
                        for name in sorted(set(mine) | set(other))
                        if mine.get(name) != other.get(name)]
    return "; ".join(differences) or "the weight shapes differ"


@gin.configurable(denylist=["model_dir"])
def train(model_dir: str, steps: int = 1000, checkpoint_every: int = 200, keep_checkpoints: int = 3,
          log_every: int = 20, summary_images: int = 4, seed: int = 0,
          distillation: DistillerConfig | None = None, init_from: str | None = None,
          model_fn=Detector) -> keras.Model:
    """Trains `model_fn()` (with `distillation`: a Distiller's student) for `steps` steps,
    resuming from model_dir's last checkpoint. A run that starts afresh takes its detector's
    first weights from the run `init_from` when given (`warm_start`)."""
    _check_counts(steps=steps, checkpoint_every=checkpoint_every,
                  keep_checkpoints=keep_checkpoints, log_every=log_every)
    config.check_integer("train.summary_images", summary_images, minimum=0)
    checkpoints.remove_partial_files(model_dir)
    keras.utils.set_random_seed(seed)
    model = build_distiller(distillation) if distillation else model_fn()
    with gin.config_scope("train"):
        dataset = input_pipeline(training=True, image_size=model.image_size, seed=seed)
    model.compile(optimizer=make_optimizer(total_steps=steps), jit_compile=False)
    first_batch = next(iter(dataset))
    model(first_batch["image"][:1])  # Build the weights before restoring into them.
    start = checkpoints.restore_latest(model, model_dir)
    if init_from and not start:
        warm_start(model.exported_detector(), init_from)
    config.write_operative_config(model_dir)
    if start >= steps:
        # Rewritten from the checkpoint: a kill after the last checkpoint, before the detector's
        # weights, or a damaged detector file that was deleted, leaves it stale or missing.
        checkpoints.save_detector(model.exported_detector(), model_dir)
        logging.info("%s is already trained to step %d; wrote its detector's weights again.",
                     model_dir, start)
        return model
    if start:
        logging.info("Resuming from step %d.", start)
    guard = CheckpointAndGuard(model_dir, keep_checkpoints, last_step=steps)
    logs = Path(model_dir) / "logs"
    callbacks = [guard, keras.callbacks.TensorBoard(str(logs), update_freq=log_every)]
    if summary_images:
        callbacks.append(ImageSummaries(
            logs / "images", {k: v[:summary_images] for k, v in first_batch.items()}))
    interval = min(checkpoint_every, steps)
    # An epoch is a checkpoint interval; the guard ends the last one at `steps` exactly, also
    # when a resumed run's checkpoint_every changed and `start` is not a multiple of it.
    first_epoch = start // interval
    model.fit(dataset, epochs=first_epoch + math.ceil((steps - start) / interval),
              steps_per_epoch=interval, initial_epoch=first_epoch,
              callbacks=callbacks, verbose=1 if flags.FLAGS.is_parsed() else 0)
    guard.raise_if_failed()
    return model


def _check_counts(**counts: int) -> None:
    """Each of train's `counts` must be a positive integer: a ConfigError naming it otherwise."""
    for name, value in counts.items():
        config.check_integer(f"train.{name}", value)

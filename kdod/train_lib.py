"""Training: optimizers and schedules, the checkpointing and image-summary callbacks, `train`.

The per-batch step is `kdod.train_step.train_batch`: Keras `fit` runs it (one device, or
MirroredStrategy), and so does `strategy_loop` through `strategy.run` for the strategies `fit`
cannot run (MultiWorkerMirroredStrategy, keras-team/keras#20585; TPUStrategy). Checkpoint files
are `kdod.checkpoints`; under a strategy only the chief writes them (`kdod.distribute`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging

from kdod import checkpoints, config, distribute, train_step, visualize
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
    """Saves a checkpoint every epoch (= checkpoint interval) with the run's training time up
    to it, stops at `last_step` exactly (a resumed run's last epoch may end early) and stops on a
    non-finite loss.

    On a NaN the run stops before the next checkpoint, so the last checkpoint on
    disk is the last good one.
    """

    def __init__(self, model_dir: str | Path, keep: int, last_step: int, save: bool = True,
                 loss_key: str = "total",
                 save_network: Callable[[keras.Model], Path] | None = None):
        super().__init__()
        self.model_dir, self.keep, self.last_step = model_dir, keep, last_step
        self.save = save  # False on the workers of a strategy other than the chief.
        self.loss_key = loss_key  # the logged loss that must stay finite
        # Writes the trained network alone beside the checkpoint; default: a Distiller's or
        # Detector's detector.
        self.save_network = save_network or (lambda model: checkpoints.save_detector(
            model.exported_detector(), model_dir))
        self.bad_step: int | None = None

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        resumed_at = int(self.model.optimizer.iterations.numpy())
        self.seconds_before = checkpoints.training_seconds(self.model_dir, resumed_at) or 0.0

    def on_train_batch_end(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if not math.isfinite(float((logs or {}).get(self.loss_key, 0.0))):
            self.bad_step = step
        if self.bad_step is not None or step >= self.last_step:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.bad_step is None and self.save:
            step = int(self.model.optimizer.iterations.numpy())
            path = checkpoints.save_checkpoint(self.model, self.model_dir, step, self.keep)
            checkpoints.record_training_seconds(
                self.model_dir, step, self.seconds_before + time.perf_counter() - self.started)
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


@gin.configurable(denylist=["model_dir", "strategy"])
def train(model_dir: str, steps: int = 1000, checkpoint_every: int = 200, keep_checkpoints: int = 3,
          log_every: int = 20, summary_images: int = 4, seed: int = 0,
          distillation: DistillerConfig | None = None, init_from: str | None = None,
          model_fn=Detector, sync_batch_norm: bool = True,
          strategy: tf.distribute.Strategy | None = None) -> keras.Model:
    """Trains `model_fn()` (with `distillation`: a Distiller's student) for `steps` steps,
    resuming from model_dir's last checkpoint. A run that starts afresh takes its detector's
    first weights from the run `init_from` when given (`warm_start`).

    Under `strategy` (`kdod.distribute.make_strategy`) the model, its losses' adapters and the
    optimizer are made in its scope, the global batch is split over the replicas and only the
    chief writes files; every worker resumes from model_dir's checkpoints, so model_dir must be
    a folder they all see, and returns once the chief has written the run's last files. With
    several replicas and `sync_batch_norm`, BatchNorm normalizes with the statistics of the
    global batch (`synchronize_batch_norm`)."""
    _check_counts(steps=steps, checkpoint_every=checkpoint_every,
                  keep_checkpoints=keep_checkpoints, log_every=log_every)
    config.check_integer("train.summary_images", summary_images, minimum=0)
    chief = distribute.is_chief(strategy)
    if chief:
        checkpoints.remove_partial_files(model_dir)
    keras.utils.set_random_seed(seed)
    with distribute.scope(strategy):
        model = build_distiller(distillation) if distillation else model_fn()
        model.compile(optimizer=make_optimizer(total_steps=steps), jit_compile=False)
    if sync_batch_norm and distribute.replicas(strategy) > 1:
        synchronize_batch_norm(model)
    teacher_cache = distillation.teacher_cache if distillation else None
    # A teacher of its own input size sees its own view of each example, unless cached.
    teacher_size = None if teacher_cache else getattr(model, "teacher_image_size", None)
    with distribute.scope(strategy):
        # Build the weights before restoring into them.
        model(tf.zeros([1, model.image_size, model.image_size, 3], tf.uint8))
        start = checkpoints.restore_latest(model, model_dir)
        if init_from and not start:
            warm_start(model.exported_detector(), init_from)
    if start < steps:
        # Made before anything is written, so bad data settings fail first. A resumed run
        # reads on from the batch it stopped at, as the uninterrupted run does.
        dataset, first_batch = _training_data(model.image_size, seed, strategy, teacher_cache,
                                              teacher_size, skip_steps=start)
    if chief:
        config.write_operative_config(model_dir)
    if start >= steps:
        # Rewritten from the checkpoint: a kill after the last checkpoint, before the detector's
        # weights, or a damaged detector file that was deleted, leaves it stale or missing.
        if chief:
            checkpoints.save_detector(model.exported_detector(), model_dir)
        logging.info("%s is already trained to step %d; wrote its detector's weights again.",
                     model_dir, start)
        distribute.barrier(strategy)
        return model
    if start:
        logging.info("Resuming from step %d.", start)
    guard = CheckpointAndGuard(model_dir, keep_checkpoints, last_step=steps, save=chief)
    custom_loop = distribute.uses_custom_loop(strategy)
    callbacks = [guard]
    if chief:
        logs = Path(model_dir) / "logs"
        # The strategy loop has no train_function whose graph TensorBoard could draw.
        callbacks.append(keras.callbacks.TensorBoard(str(logs), update_freq=log_every,
                                                     write_graph=not custom_loop))
        if summary_images:
            callbacks.append(ImageSummaries(
                logs / "images", {k: v[:summary_images] for k, v in first_batch.items()}))
    interval = min(checkpoint_every, steps)
    # An epoch is a checkpoint interval; the guard ends the last one at `steps` exactly, also
    # when a resumed run's checkpoint_every changed and `start` is not a multiple of it.
    first_epoch = start // interval
    epochs = first_epoch + math.ceil((steps - start) / interval)
    verbose = 1 if flags.FLAGS.is_parsed() and chief else 0
    if custom_loop:
        strategy_loop(model, strategy, dataset, callbacks, range(first_epoch, epochs), interval,
                      verbose)
    else:
        model.fit(dataset, epochs=epochs, steps_per_epoch=interval, initial_epoch=first_epoch,
                  callbacks=callbacks, verbose=verbose)
    guard.raise_if_failed()
    distribute.barrier(strategy)  # Every worker returns once the chief's files are written.
    return model


def synchronize_batch_norm(model: keras.Model) -> None:
    """BatchNorm in training computes its statistics over all replicas (Keras's
    `synchronized`), as one device would over the global batch. Without it each worker's moving
    statistics follow its own share and drift apart: Keras 3 creates them with no aggregation."""
    for layer in model._flatten_layers():  # Keras's walk over nested layers.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.synchronized = True


def _training_data(image_size: int, seed: int, strategy: tf.distribute.Strategy | None,
                   teacher_cache: str | None = None, teacher_image_size: int | None = None,
                   skip_steps: int = 0
                   ) -> tuple[tf.data.Dataset | Iterator, dict[str, tf.Tensor]]:
    """The training batches for `fit` (a dataset) or `strategy_loop` (an iterator over the
    strategy's distributed dataset) after the first `skip_steps` steps' batches, and a batch of
    this worker's images (for image summaries: the run's first, so a resumed run shows the
    images its first sitting did and computes the skipped batches once; the strategy loop's
    is the first it reads). With `teacher_cache` they are the cache's examples and teacher
    outputs; with `teacher_image_size` they hold the teacher's view of each example too."""

    def pipeline(input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        with gin.config_scope("train"):
            return input_pipeline(training=True, image_size=image_size, seed=seed,
                                  input_context=input_context, teacher_cache=teacher_cache,
                                  teacher_image_size=teacher_image_size)

    if strategy is None:
        dataset = pipeline()
        return dataset.skip(skip_steps), next(iter(dataset))
    if not distribute.uses_custom_loop(strategy):
        # Strings fail in a distributed dataset (AddN of strings), and training reads none.
        dataset = pipeline().map(_numbers_only)
        distribute.check_global_batch(strategy, dataset.element_spec["image"].shape[0])
        return dataset.skip(skip_steps), next(iter(dataset))

    def replica_batches(context: tf.distribute.InputContext) -> tf.data.Dataset:
        # TPUs take no strings either. A step reads a batch for each replica a pipeline feeds.
        per_step = context.num_replicas_in_sync // context.num_input_pipelines
        return pipeline(context).map(_numbers_only).skip(skip_steps * per_step)

    iterator = iter(strategy.distribute_datasets_from_function(replica_batches))
    first = tf.nest.map_structure(lambda value: strategy.experimental_local_results(value)[0],
                                  next(iterator))
    return iterator, first


def _numbers_only(batch: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {key: value for key, value in batch.items() if value.dtype != tf.string}


def strategy_loop(model: keras.Model, strategy: tf.distribute.Strategy, batches: Iterator,
                  callbacks: list[keras.callbacks.Callback], epochs: range, steps_per_epoch: int,
                  verbose: int = 0) -> None:
    """Keras `fit`'s loop over distributed `batches` with `strategy.run`, for the strategies
    `fit` cannot run: the step is `train_step.train_batch`, the logs are the losses averaged
    over the replicas, and the callbacks are called as `fit` calls them."""

    @tf.function
    def step(batch):
        terms = strategy.run(lambda replica_batch: train_step.train_batch(model, replica_batch),
                             args=(batch,))
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in terms.items()}

    callback_list = keras.callbacks.CallbackList(
        callbacks, add_history=True, add_progbar=bool(verbose), model=model, verbose=verbose,
        epochs=epochs.stop, steps=steps_per_epoch)
    model.stop_training = False
    callback_list.on_train_begin()
    logs: dict[str, float] = {}
    for epoch in epochs:
        callback_list.on_epoch_begin(epoch)
        for index in range(steps_per_epoch):
            callback_list.on_train_batch_begin(index)
            logs = {name: float(value) for name, value in step(next(batches)).items()}
            callback_list.on_train_batch_end(index, logs)
            if model.stop_training:
                break
        callback_list.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    callback_list.on_train_end(logs)


def _check_counts(**counts: int) -> None:
    """Each of train's `counts` must be a positive integer: a ConfigError naming it otherwise."""
    for name, value in counts.items():
        config.check_integer(f"train.{name}", value)

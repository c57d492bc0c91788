"""Input pipeline: TFDS -> RGB examples -> augment / letterbox -> padded batches.

Every source is a TFDS data set with the plate features of docs/design.md. Several
sources can be mixed with weights (the original project trained on two Kaggle
sets combined)::

    # gin
    train/input_pipeline.sources = [("car_plates", "train", 1.0),
                                    ("number_plates", "train", 0.5)]

A batch is a dict:
    image          uint8 [B, S, S, 3]
    boxes          float32 [B, M, 4]  normalized ymin, xmin, ymax, xmax in the S x S image
    labels         int32 [B, M]       class ids, -1 for padding
    num_boxes      int32 [B]
    filename       string [B]
    original_size  int32 [B, 2]       source image height, width
    window         float32 [B, 4]     source pixels shown in the S x S image: y0, x0, y1, x1
    teacher_image  uint8 [B, T, T, 3] training with teacher_image_size = T: the same view at T
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence

import gin
import tensorflow as tf
import tensorflow_datasets as tfds

from kdod import config
from kdod.data import augment as augment_lib
from kdod.data import cache, tfod
from kdod.errors import KdodError

AUTOTUNE = tf.data.AUTOTUNE
Source = tuple[str, str, float]  # (TFDS name, split, weight)


class NoPlateTextError(KdodError):
    """Plate text was asked of a source that has none (no `objects/text`)."""


def load_examples(name: str, split: str, data_dir: str | None = None,
                  shuffle_files: bool = False, with_text: bool = False) -> tf.data.Dataset:
    """A TFDS plate data set as dicts: image, boxes, labels, filename (and texts).

    `name` is a TFDS name, optionally followed by ",manual_dir=/data/archive_folder" (where a
    builder finds a manually downloaded archive, e.g. a Kaggle folder, instead of the TFDS
    default), or TF OD API records: "tfrecord:/data/train.record*", optionally followed by
    ",label_map=/data/label_map.pbtxt" (default: the one beside the records). A "{split}" in
    the records pattern is replaced by `split` ("tfrecord:/data/{split}.record*"); without it
    the split is ignored.

    `with_text` adds `texts` (string [N], each box's plate text) from the source's
    `objects/text`; a source without it raises NoPlateTextError.
    """
    is_records = name.startswith("tfrecord:")
    base, options = source_options(name.removeprefix("tfrecord:"),
                                   ("label_map",) if is_records else ("manual_dir",))
    if is_records:
        if with_text:
            raise NoPlateTextError(_no_text_message(name, split))
        return tfod.load_tfod_records(base.replace("{split}", split), options.get("label_map"),
                                      shuffle_files=shuffle_files)
    import tfds_builders  # noqa: F401  Registers kdod's builders with TFDS.

    download = tfds.download.DownloadConfig(manual_dir=options.get("manual_dir"))
    with tfds_errors(base, split):
        dataset, info = tfds.load(
            base, split=split, data_dir=data_dir, shuffle_files=shuffle_files,
            read_config=tfds.ReadConfig(add_tfds_id=False), with_info=True,
            download_and_prepare_kwargs={"download_config": download})
    check_tfds_files(info, split)
    if with_text and "text" not in dataset.element_spec["objects"]:
        raise NoPlateTextError(_no_text_message(name, split))
    return dataset.map(lambda example: _standardize(example, with_text),
                       num_parallel_calls=AUTOTUNE)


@contextlib.contextmanager
def tfds_errors(name: str, split: str) -> Iterator[None]:
    """TFDS's errors for an unknown data set or split as ConfigErrors naming them."""
    try:
        yield
    except tfds.core.DatasetNotFoundError:
        raise config.ConfigError(f"Unknown data set {name!r}; kdod's are car_plates, "
                                 "number_plates and synthetic_plates/<config>.") from None
    except (ValueError, KeyError) as error:  # An unknown split, or a malformed one.
        raise config.ConfigError(f"Cannot read {name!r} split {split!r}: {error}") from None


def check_tfds_files(info: tfds.core.DatasetInfo, split: str) -> None:
    """Reads the files of a TFDS split once (`tfod.count_records`): a damaged file, or one
    with fewer records than the data set's info says, is an error naming it."""
    if info.file_format != tfds.core.FileFormat.TFRECORD:
        return  # Other formats hold no checksums to verify this way.
    shards = {shard.filename: shard.examples_in_shard
              for shard in info.splits[split].file_instructions}
    for path, expected in shards.items():
        if (count := tfod.count_records(path)) != expected:
            raise tfod.DamagedRecordsError(
                f"{path} holds {count} records where its data set's info says {expected}: it "
                f"was cut short. Prepare the data set again (delete {info.data_dir} first).")


def source_options(name: str, known: Sequence[str]) -> tuple[str, dict[str, str]]:
    """Splits "base,key=value,..." into the base and its options; unknown keys are an error."""
    base, *pairs = name.split(",")
    options = dict(pair.partition("=")[::2] for pair in pairs)
    if unknown := [key for key in options if key not in known]:
        raise config.ConfigError(f"Source {name!r}: unknown option "
                                 f"{', '.join(map(repr, unknown))}; this kind of source takes "
                                 f"{', '.join(known)}.")
    return base, options


def _no_text_message(name: str, split: str) -> str:
    return (f"{name} ({split}) has no plate text (objects/text). Give the text in a CSV of "
            "filename,plate_text rows, one row per plate in the order of the image's boxes "
            "(python -m kdod.evaluate --text_csv=truth.csv).")


def _standardize(example: dict, with_text: bool = False) -> dict:
    image = example["image"]
    standard = {
        "image": image[..., :3],  # Drop alpha where a decoder kept it.
        "boxes": tf.reshape(tf.cast(example["objects"]["bbox"], tf.float32), [-1, 4]),
        "labels": tf.cast(example["objects"]["label"], tf.int32),
        "filename": example["image/filename"],
        "original_size": tf.shape(image)[:2],
    }
    if with_text:
        standard["texts"] = example["objects"]["text"]
    return standard


def mix(datasets: Sequence[tf.data.Dataset], weights: Sequence[float],
        seed: int | None = None) -> tf.data.Dataset:
    """Samples from repeated `datasets` with probabilities proportional to `weights`."""
    if len(datasets) == 1:
        return datasets[0]
    total = float(sum(weights))
    return tf.data.Dataset.sample_from_datasets(
        [d.repeat() for d in datasets], [w / total for w in weights], seed=seed)


def pad_boxes(example: dict, max_boxes: int) -> dict:
    """Pads boxes to `max_boxes` (labels -1); more boxes than that is an error, not a cut."""
    num = tf.shape(example["boxes"])[0]
    check = tf.debugging.assert_less_equal(
        num, max_boxes, message=f"An image has more boxes than input_pipeline.max_boxes="
        f"{max_boxes}; raise it in gin.")
    with tf.control_dependencies([check]):
        padding = max_boxes - num
    images = {key: tf.cast(tf.round(example[key]), tf.uint8)
              for key in ("image", "teacher_image") if key in example}
    return {
        **example,
        **images,
        "boxes": tf.pad(example["boxes"], [[0, padding], [0, 0]]),
        "labels": tf.pad(example["labels"], [[0, padding]], constant_values=-1),
        "num_boxes": num,
    }


@gin.configurable
def input_pipeline(
    sources: Sequence[Source] = (("synthetic_plates/quick", "train", 1.0),),
    image_size: int = 320,
    batch_size: int = 8,
    training: bool = True,
    augmentation: augment_lib.Augmentation | None = None,
    max_boxes: int = 32,
    shuffle_buffer: int = 1024,
    seed: int | None = None,
    data_dir: str | None = None,
    split: str | None = None,
    input_context: tf.distribute.InputContext | None = None,
    teacher_cache: str | None = None,
    teacher_image_size: int | None = None,
) -> tf.data.Dataset:
    """Batches for training (shuffled, augmented, repeated) or evaluation (letterboxed, once).

    Evaluation with several sources concatenates them in order; training mixes
    them by weight. `split`, when given, replaces the split of every source.

    `input_context` (from `strategy.distribute_datasets_from_function`) makes this the
    pipeline of one worker: `batch_size` stays the global batch, each replica gets its share,
    and the examples of every source are sharded over the workers' pipelines.

    `teacher_cache` (a folder of kdod.data.cache, for training) replaces the sources: its
    examples, augmented and shuffled when the cache was made, come in their stored order with
    the teacher's outputs on them.

    `teacher_image_size` (training, for a teacher of another input size) adds each augmented
    example's view at that size as "teacher_image" (kdod.data.augment.augment).
    """
    _check_settings(sources, image_size, batch_size, max_boxes, shuffle_buffer)
    if teacher_image_size is not None:
        config.check_integer("input_pipeline.teacher_image_size", teacher_image_size)
    shards = input_context.num_input_pipelines if input_context else 1
    # Sharding after reading needs the files in the same order on every worker.
    datasets = ([_shard(cache.cached_examples(teacher_cache), input_context)] if teacher_cache
                else [_shard(load_examples(name, split or source_split, data_dir,
                                           shuffle_files=training and shards == 1), input_context)
                      for name, source_split, _ in sources])
    # What one training step reads from this pipeline (of every replica it feeds).
    step_examples = batch_size // shards
    if input_context:
        if batch_size % input_context.num_replicas_in_sync:
            raise config.ConfigError(
                f"input_pipeline.batch_size = {batch_size} is the global batch; it must be a "
                f"multiple of the {input_context.num_replicas_in_sync} replicas of the "
                "strategy.")
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    if training and teacher_cache:
        dataset = datasets[0].repeat()
    elif training:
        augmentation = augmentation or augment_lib.Augmentation()
        examples = mix(datasets, [w for _, _, w in sources], seed).repeat()
        dataset = shuffled(augmented(examples, image_size, augmentation, teacher_image_size,
                                     seed), shuffle_buffer, seed)
        if augmentation.mosaic_prob and augmentation.mosaic_batches is not None:
            # The whole photographs after the mosaics, with augmentation draws of their own
            # (the seed's would repeat those of the mosaics' first tiles).
            whole = dataclasses.replace(augmentation, mosaic_prob=0.0)
            later = None if seed is None else seed + 1
            dataset = dataset.take(augmentation.mosaic_batches * step_examples).concatenate(
                shuffled(augmented(examples, image_size, whole, teacher_image_size, later),
                         shuffle_buffer, later))
    else:
        dataset = datasets[0]
        for more in datasets[1:]:
            dataset = dataset.concatenate(more)
        dataset = dataset.map(lambda example: augment_lib.letterbox(example, image_size),
                              num_parallel_calls=AUTOTUNE)
    dataset = dataset.map(lambda example: pad_boxes(example, max_boxes),
                          num_parallel_calls=AUTOTUNE)
    return dataset.batch(batch_size, drop_remainder=training).prefetch(AUTOTUNE)


def augmented(examples: tf.data.Dataset, image_size: int, augmentation: augment_lib.Augmentation,
              teacher_image_size: int | None = None, seed: int | None = None) -> tf.data.Dataset:
    """`examples` augmented (kdod.data.augment.augment), as mosaics with mosaic_prob."""
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    dataset = tf.data.Dataset.zip(examples, seeds).map(
        lambda example, s: augment_lib.augment(example, s, image_size, augmentation,
                                               teacher_image_size),
        num_parallel_calls=AUTOTUNE)
    if augmentation.mosaic_prob:
        dataset = mosaics(dataset, image_size, augmentation, teacher_image_size, seed)
    return dataset


def shuffled(examples: tf.data.Dataset, shuffle_buffer: int,
             seed: int | None = None) -> tf.data.Dataset:
    """The augmented training stream shuffled in a buffer.

    Shuffled are the small model-size images, not the decoded originals; a cache holds them in
    the order the online run reads them already. The stream repeats inside, so one iterator
    serves a run: every iterator giving the same order makes a run's first batch (shown in
    image summaries) the one it trains on, and a cache its exact replay."""
    return examples.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)


def mosaics(examples: tf.data.Dataset, image_size: int, augmentation: augment_lib.Augmentation,
            teacher_image_size: int | None = None, seed: int | None = None) -> tf.data.Dataset:
    """Each four augmented examples in turn as one (kdod.data.augment.mosaic)."""
    if teacher_image_size and teacher_image_size % image_size:
        raise config.ConfigError(
            f"Augmentation.mosaic_prob needs the teacher's input size to be a multiple of the "
            f"student's: input_pipeline.teacher_image_size = {teacher_image_size}, "
            f"image_size = {image_size}.")
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    return tf.data.Dataset.zip(examples.ragged_batch(4), seeds).map(
        lambda tiles, s: augment_lib.mosaic(tiles, s, image_size, augmentation),
        num_parallel_calls=AUTOTUNE)


def _shard(examples: tf.data.Dataset,
           input_context: tf.distribute.InputContext | None) -> tf.data.Dataset:
    """This worker's share of `examples` (all of them without several input pipelines)."""
    if not input_context or input_context.num_input_pipelines == 1:
        return examples
    return examples.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def _check_settings(sources: Sequence[Source], image_size: int, batch_size: int, max_boxes: int,
                    shuffle_buffer: int) -> None:
    """Refuses settings that would fail as TensorFlow errors deep in a run, naming the binding."""
    for name, value in (("image_size", image_size), ("batch_size", batch_size),
                        ("max_boxes", max_boxes), ("shuffle_buffer", shuffle_buffer)):
        config.check_integer(f"input_pipeline.{name}", value)
    if not sources or not all(isinstance(s, tuple | list) and len(s) == 3 for s in sources):
        raise config.ConfigError("input_pipeline.sources must be a non-empty list of "
                                 f"(name, split, weight) triples, got {sources!r}.")
    for name, _, weight in sources:
        config.check_number(f"input_pipeline.sources: the weight of {name!r}", weight, above=0)

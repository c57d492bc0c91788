"""Training the plate recognizer (`kdod.ocr.recognizer`) with CTC: `train_ocr`.

    python -m kdod.train_ocr --gin_file=gin/ocr/plate_ctc.gin --model_dir=runs/plate_ctc
    # fine-tuning on one's own labelled crops (filename,plate_text), from a trained run:
    python -m kdod.train_ocr --gin_file=gin/ocr/plate_ctc.gin --model_dir=runs/my_plates \
        --gin_param="train_ocr.text_csv='my_plates/labels.csv'" \
        --gin_param="train_ocr.init_from='runs/plate_ctc'"

Data: `crops` rendered crops (`tfds_builders.synthetic_plates.crops`, reproducible from
`seed`, cached in model_dir/crops-*.npz so a resumed run does not render them again) and,
with `text_csv`, the user's crops, drawn in a share `csv_share` of every batch. Light
augmentation (shift, brightness, contrast) runs in tf.data. Like `kdod.train`: Keras `fit`
with a progress bar, a checkpoint every `checkpoint_every` steps (resumed when the command is
run again), TensorBoard logs in model_dir/logs, the operative gin config. At the end the
recognizer alone is written (recognizer.weights.h5), exported (plate_ctc.tflite, what the
`plate_ctc` OCR backend runs) and measured through that export on held-out crops
(model_dir/metrics.json: exact match, CER, ms per plate, model size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from pathlib import Path

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import flags, logging

from kdod import checkpoints, config
from kdod.export_lib import convert_recognizer_tflite
from kdod.files import write_json
from kdod.metrics.text import TextMetrics
from kdod.ocr import crop_sets, ctc, plate_ctc, soft_labels
from kdod.ocr.recognizer import RecognizerConfig, build_recognizer
from kdod.train_lib import CheckpointAndGuard, make_optimizer
from tfds_builders.synthetic_plates.crops import CropConfig

# gin: CropConfig.vanity_probability = 0.3, ... (the renderer itself does not import gin).
gin.external_configurable(CropConfig, module="kdod.ocr")

METRICS_FILE = "metrics.json"
TRAIN_COMMAND = "python -m kdod.train_ocr --gin_file=gin/ocr/plate_ctc.gin --model_dir={}"


def ctc_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """CTC per crop; labels are class ids padded with the blank 0 (`kdod.ocr.ctc`)."""
    return keras.losses.ctc(tf.cast(labels, tf.int32), logits)


SOFT_WIDTH = ctc.MAX_LABEL_LENGTH * soft_labels.CLASSES  # soft labels at the targets' end


def with_soft_labels(loss, weight: float, temperature: float = 1.0):
    """`loss` on targets whose last SOFT_WIDTH values are each crop's soft labels, plus
    `weight` times `soft_labels.soft_label_loss` on them (0 for crops without)."""
    def loss_with_soft_labels(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
        hard = targets[:, :-SOFT_WIDTH]
        soft = tf.reshape(targets[:, -SOFT_WIDTH:], [-1, ctc.MAX_LABEL_LENGTH,
                                                     soft_labels.CLASSES])
        return loss(hard, logits) + weight * soft_labels.soft_label_loss(
            hard[:, :ctc.MAX_LABEL_LENGTH], soft, logits, temperature)
    return loss_with_soft_labels


RULED_OUT = 1e4  # subtracted from the character logits of a run the crop's layout rules out


def layout_ctc_loss(targets: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """CTC per crop with each run of a two-line network (`kdod.ocr.recognizer`) held to the
    crop's layout: targets are the labels with the layout appended (1 two-line, 0 one-line,
    `crop_sets.UNKNOWN_LAYOUT`). The run the layout rules out (the halves' on a one-line plate,
    the whole crop's on a two-line one) may only be blank in CTC's alignment and is taught blank
    (the sum of its frames' -log p(blank)); an unknown layout is aligned over all frames.
    Aligned freely, the network read a one-line plate's last characters from the halves' run
    (the bottom half's right end) and the rest from the whole run: 0.2% exact after 8000 steps.
    """
    labels, layout = tf.cast(targets[:, :-1], tf.int32), targets[:, -1:]
    frames = logits.shape[1]
    in_halves = tf.range(frames)[None] >= frames // 3  # [1, T]: the whole run is a third.
    ruled_out = tf.cast((in_halves & (layout == 0)) | (~in_halves & (layout == 1)), tf.float32)
    characters = tf.one_hot(0, logits.shape[-1], on_value=0.0, off_value=1.0)  # 0 is the blank.
    held = logits - RULED_OUT * ruled_out[..., None] * characters
    not_blank = -tf.nn.log_softmax(logits)[..., 0] * ruled_out
    return keras.losses.ctc(labels, held) + tf.reduce_sum(not_blank, axis=1)


def layout_loss(two_line: tf.Tensor, gate: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy per crop of the layout gate against whether the crop is a two-line
    plate; 0 where the layout is unknown (`crop_sets.UNKNOWN_LAYOUT`, a user's crops)."""
    two_line = tf.reshape(tf.cast(two_line, tf.float32), [-1, 1])
    known = two_line[:, 0] >= 0
    entropy = keras.losses.binary_crossentropy(tf.maximum(two_line, 0.0), gate)
    return tf.where(known, entropy, tf.zeros_like(entropy))


def training_model(network: keras.Model) -> keras.Model:
    """The recognizer as trained: with a layout gate (`RecognizerConfig.two_lines`), its logits
    and the gate, the gate taught by each rendered crop's layout. Left to CTC alone the gate
    settled on one-line for every plate (two-line plates 0.5% exact after 4000 steps)."""
    if not _has_gate(network):
        return network
    return keras.Model(network.inputs, {"logits": network.output,
                                        "two_line": network.get_layer("two_line").output})


def _has_gate(network: keras.Model) -> bool:
    return any(layer.name == "two_line" for layer in network.layers)


def cached_synthetic(model_dir: str | Path, count: int, seed: int, split: str,
                     recognizer: RecognizerConfig, crop_config: CropConfig,
                     init_from: str | Path | None = None) -> crop_sets.CropSet:
    """`crop_sets.synthetic_crops`, kept in model_dir keyed by everything that shapes them (the
    renderer's code too); a fine-tuning run reads the same crops from the run it starts from
    (`init_from`) when there."""
    key = repr((count, seed, split, recognizer.height, recognizer.width, crop_config,
                crop_sets.renderer_fingerprint()))
    name = f"crops-{split}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"
    path = Path(model_dir) / name
    for stored_path in (path, *([Path(init_from) / name] if init_from else [])):
        if stored_path.is_file():
            with np.load(stored_path) as stored:
                return crop_sets.CropSet(
                    stored["images"], stored["labels"], list(stored["texts"]),
                    crop_sets.synthetic_two_line(count, seed, split, crop_config))
    logging.info("Rendering %d %s crops (cached in %s).", count, split, path)
    crops = crop_sets.synthetic_crops(count, seed, split, recognizer.height, recognizer.width,
                                      crop_config)
    partial = path.with_name(checkpoints.PARTIAL_PREFIX + path.name)
    with open(partial, "wb") as file:
        np.savez(file, images=crops.images, labels=crops.labels, texts=np.array(crops.texts))
    partial.replace(path)
    return crops


def augment(images: tf.Tensor, max_shift: int = 4) -> tf.Tensor:
    """A batch shifted by up to `max_shift` pixels, with random brightness and contrast."""
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    padded = tf.pad(tf.cast(images, tf.float32),
                    [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]],
                    mode="SYMMETRIC")
    shifted = tf.image.random_crop(padded, [batch, height, width, 3])
    mean = tf.reduce_mean(shifted, axis=[1, 2, 3], keepdims=True)
    contrast = tf.random.uniform([batch, 1, 1, 1], 0.75, 1.25)
    brightness = tf.random.uniform([batch, 1, 1, 1], -25.0, 25.0)
    return tf.clip_by_value((shifted - mean) * contrast + mean + brightness, 0.0, 255.0)


def training_data(sets: list[tuple[crop_sets.CropSet, float]], batch_size: int,
                  seed: int, layouts: bool = False, soft: bool = False) -> tf.data.Dataset:
    """Endless augmented batches (images float32, labels) drawn from `sets` by weight; with
    `layouts`, the targets are {"logits": labels and layout (`layout_ctc_loss`), "two_line":
    layout} (`training_model`); with `soft`, the logits' targets end with the soft labels
    (`with_soft_labels`; 0 for a set without)."""
    def targets(crops: crop_sets.CropSet):
        parts = [crops.labels, *([crops.two_line[:, None]] if layouts else [])]
        if soft:
            parts.append(np.zeros((len(crops), SOFT_WIDTH)) if crops.soft is None
                         else crops.soft.reshape(len(crops), SOFT_WIDTH))
        labelled = np.concatenate(parts, axis=1).astype(np.float32) if len(parts) > 1 \
            else crops.labels
        return {"logits": labelled, "two_line": crops.two_line} if layouts else labelled

    streams = [tf.data.Dataset.from_tensor_slices((crops.images, targets(crops)))
               .shuffle(len(crops), seed=seed + index, reshuffle_each_iteration=True).repeat()
               for index, (crops, _) in enumerate(sets)]
    weights = [weight for _, weight in sets]
    data = (streams[0] if len(streams) == 1 else
            tf.data.Dataset.sample_from_datasets(streams, weights, seed=seed))
    return (data.batch(batch_size, drop_remainder=True)
            .map(lambda images, labels: (augment(images), labels),
                 num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def measure(reader: plate_ctc.PlateCtcBackend, crops: list[np.ndarray],
            texts: list[str]) -> dict[str, float]:
    """Exact match, CER and ms per plate of a recognizer's TFLite export on crops as cut."""
    import time

    metrics = TextMetrics()
    start = time.perf_counter()
    for crop, text in zip(crops, texts):
        metrics.add(text, reader.read([crop])[0].text)
    seconds = time.perf_counter() - start
    return {**metrics.result(), "ms_per_plate": 1000 * seconds / max(len(crops), 1)}


def write_export(recognizer: keras.Model, model_dir: str | Path,
                 quantize: str = "float32") -> Path:
    """model_dir/plate_ctc.tflite, through a partial file (a kill leaves no half model)."""
    path = Path(model_dir) / plate_ctc.TFLITE_NAME
    partial = path.with_name(checkpoints.PARTIAL_PREFIX + path.name)
    partial.write_bytes(convert_recognizer_tflite(recognizer, quantize))
    partial.replace(path)
    return path


def evaluate_export(model_dir: str | Path, seed: int, count: int, crop_config: CropConfig,
                    text_csv: str | None, csv_holdout: list | None) -> dict:
    """metrics.json: the export on held-out rendered crops (clean and with effects; clean per
    layout too, `count` each: one weak layout hides in the mean) and on the held-out part of
    the user's crops, with its size."""
    reader = plate_ctc.PlateCtcBackend(str(model_dir))
    results: dict = {"model_bytes": reader.path.stat().st_size}
    for name, crop_config_ in (("synthetic_clean", crop_config.clean()),
                               ("synthetic", crop_config)):
        crops, texts = crop_sets.rendered_crops(count, seed, "test", crop_config_)
        results[name] = measure(reader, crops, texts)
    results["synthetic_clean_by_layout"] = {
        layout: measure(reader, *crop_sets.rendered_crops(
            count, seed, "test", dataclasses.replace(crop_config.clean(), layouts=(layout,))))
        for layout in sorted(set(crop_config.layouts))}
    if csv_holdout:
        results["csv_holdout"] = measure(reader, *zip(*csv_holdout))
        results["text_csv"] = str(text_csv)
    write_json(Path(model_dir) / METRICS_FILE, results)
    logging.info("Recognizer metrics (%s): %s", Path(model_dir) / METRICS_FILE, results)
    return results


def split_csv(text_csv: str, holdout: float, seed: int, bad_text: str
              ) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """The rows (image path, text) of the user's crops (train, held out): a random `holdout`
    share kept for measuring."""
    rows = crop_sets.read_csv_rows(text_csv, bad_text)
    order = np.random.default_rng(seed).permutation(len(rows))
    kept = round(holdout * len(rows))
    return [rows[i] for i in order[kept:]], [rows[i] for i in order[:kept]]


def users_set(text_csv: str, rows: list[tuple[Path, str]], recognizer: RecognizerConfig,
              soft_labels_file: str | None) -> crop_sets.CropSet:
    """The user's training crops fitted to the recognizer, with their soft labels if given."""
    users = crop_sets.fitted_set([crop_sets.load_crop(path) for path, _ in rows],
                                 [text for _, text in rows], recognizer.height, recognizer.width)
    if soft_labels_file:
        users.soft = soft_labels.read_soft_labels(soft_labels_file, rows, Path(text_csv).parent)
    return users


def save_recognizer(model: keras.Model, model_dir: str | Path) -> Path:
    """model_dir/recognizer.weights.h5: the network alone, without the optimizer's state that
    Keras saves with a compiled model (as the detectors' detector.weights.h5)."""
    return checkpoints.save_weights_file(_network(model), model_dir,
                                         checkpoints.RECOGNIZER_WEIGHTS)


def initialize_from(recognizer: keras.Model, run_dir: str) -> None:
    """Loads a trained run's recognizer.weights.h5 into `recognizer` (same RecognizerConfig):
    the network's weights alone. Its optimizer's state, which files of earlier kdod versions
    hold, stays behind: the fine-tuning run counts its own steps from 0 with fresh moments."""
    checkpoints.load_weights_file(_network(recognizer), run_dir, checkpoints.RECOGNIZER_WEIGHTS,
                                  "recognizer", TRAIN_COMMAND.format(run_dir))
    logging.info("Initialized the recognizer from %s.",
                 Path(run_dir) / checkpoints.RECOGNIZER_WEIGHTS)


def _network(model: keras.Model) -> keras.Model:
    """The compiled recognizer's layers as an uncompiled model (the same variables): images
    in, logits out, what is saved and exported."""
    return keras.Model(model.inputs, model.get_layer("logits").output)


@gin.configurable(denylist=["model_dir"])
def train_ocr(model_dir: str, steps: int = 10000, batch_size: int = 64,
              checkpoint_every: int = 1000, keep_checkpoints: int = 3, log_every: int = 50,
              seed: int = 0, crops: int = 30000, crop_config: CropConfig | None = None,
              recognizer: RecognizerConfig | None = None, text_csv: str | None = None,
              csv_share: float = 0.5, csv_holdout: float = 0.1, bad_text: str = "skip",
              init_from: str | None = None, eval_crops: int = 500, layout_weight: float = 1.0,
              soft_labels: str | None = None, soft_label_weight: float = 1.0,
              soft_label_temperature: float = 1.0,
              quantize: str = "float32", deterministic: bool = False) -> keras.Model:
    """Trains the recognizer for `steps` steps (see the module docstring); returns it.

    `text_csv`: a user's crops (`crop_sets`), a `csv_share` of each batch (1.0: theirs alone,
    then `crops` may be 0), a `csv_holdout` share kept out to measure. `init_from`: a trained
    run whose recognizer starts this one (fine-tuning), when this run starts afresh.
    `layout_weight`: the layout gate's loss (`training_model`) beside CTC's.
    `soft_labels`: a teacher's per-character soft labels of the text_csv crops (the
    soft_labels.npz `kdod.pseudo_label_ocr` writes beside its labels.csv), distilled with
    `soft_label_weight` beside CTC at `soft_label_temperature` (`kdod.ocr.soft_labels`).
    `deterministic`: the same seed gives the same weights (TensorFlow's op determinism, for
    the whole process: threaded reductions and tf.data's random augmentation run in a fixed
    order, a little slower).
    """
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("checkpoint_every", checkpoint_every),
                        ("keep_checkpoints", keep_checkpoints), ("log_every", log_every)):
        config.check_integer(f"train_ocr.{name}", value)
    config.check_integer("train_ocr.crops", crops, minimum=0)
    config.check_integer("train_ocr.eval_crops", eval_crops, minimum=0)
    config.check_number("train_ocr.csv_share", csv_share, above=0, at_most=1)
    config.check_number("train_ocr.csv_holdout", csv_holdout, at_least=0, below=1)
    config.check_number("train_ocr.layout_weight", layout_weight, at_least=0)
    config.check_number("train_ocr.soft_label_weight", soft_label_weight, above=0)
    config.check_number("train_ocr.soft_label_temperature", soft_label_temperature, above=0)
    if soft_labels and not text_csv:
        raise config.ConfigError("train_ocr.soft_labels are labels of the train_ocr.text_csv "
                                 "crops: give the CSV they were written for.")
    if not crops and not (text_csv and csv_share == 1.0):
        raise config.ConfigError("train_ocr.crops = 0 leaves no training data: give a positive "
                                 "count, or train_ocr.text_csv with train_ocr.csv_share = 1.0.")
    crop_config, recognizer = crop_config or CropConfig(), recognizer or RecognizerConfig()
    checkpoints.remove_partial_files(model_dir)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()

    sets, holdout = [], None
    if text_csv:
        train_rows, holdout_rows = split_csv(text_csv, csv_holdout, seed, bad_text)
        if not train_rows:
            raise config.ConfigError(f"train_ocr.text_csv = {text_csv!r}: no crops left to train "
                                     f"on after holding out {csv_holdout:.0%}.")
        users = users_set(text_csv, train_rows, recognizer, soft_labels)
        holdout = [(crop_sets.load_crop(path), text) for path, text in holdout_rows]
        logging.info("%d crops from %s for training, %d held out.", len(users), text_csv,
                     len(holdout))
        sets.append((users, csv_share))
    if crops and not (text_csv and csv_share == 1.0):
        synthetic = cached_synthetic(model_dir, crops, seed, "train", recognizer, crop_config,
                                     init_from)
        sets.append((synthetic, 1.0 - csv_share if text_csv else 1.0))

    model = training_model(build_recognizer(recognizer))
    gated = _has_gate(model)
    text_loss = layout_ctc_loss if gated else ctc_loss
    if soft_labels:
        text_loss = with_soft_labels(text_loss, soft_label_weight, soft_label_temperature)
    model.compile(optimizer=make_optimizer(total_steps=steps),
                  loss={"logits": text_loss, "two_line": layout_loss} if gated else text_loss,
                  loss_weights={"logits": 1.0, "two_line": layout_weight} if gated else None,
                  jit_compile=False)
    model.optimizer.build(model.trainable_variables)
    start = checkpoints.restore_latest(model, model_dir)
    if init_from and not start:
        initialize_from(model, init_from)
    config.write_operative_config(model_dir)
    if start < steps:
        if start:
            logging.info("Resuming from step %d.", start)
        _fit(model, training_data(sets, batch_size, seed, gated, bool(soft_labels)), model_dir,
             start, steps, checkpoint_every, keep_checkpoints, log_every)
    save_recognizer(model, model_dir)
    logging.info("Exported %s", write_export(_network(model), model_dir, quantize))
    if eval_crops:
        evaluate_export(model_dir, seed, eval_crops, crop_config, text_csv, holdout)
    return model


def _fit(model: keras.Model, data: tf.data.Dataset, model_dir: str, start: int, steps: int,
         checkpoint_every: int, keep: int, log_every: int) -> None:
    """`fit` in epochs of one checkpoint interval, stopping at `steps` exactly (as kdod.train)."""
    guard = CheckpointAndGuard(
        model_dir, keep, last_step=steps, loss_key="loss",
        save_network=lambda network: save_recognizer(network, model_dir))
    logs = Path(model_dir) / "logs"
    interval = min(checkpoint_every, steps)
    first_epoch = start // interval
    model.fit(data, epochs=first_epoch + math.ceil((steps - start) / interval),
              steps_per_epoch=interval, initial_epoch=first_epoch,
              callbacks=[guard, keras.callbacks.TensorBoard(str(logs), update_freq=log_every)],
              verbose=1 if flags.FLAGS.is_parsed() else 0)
    guard.raise_if_failed()

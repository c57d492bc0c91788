"""The teacher-output cache: the teacher run once over augmented training examples, stored with
them, so distillation trains the student on exactly those inputs without running the teacher.

    python -m kdod.cache_teacher --gin_file=gin/kl_ssd.gin --output=runs/kl_cache
    python -m kdod.train --gin_file=gin/kl_ssd.gin --model_dir=runs/kl_cached \
        --gin_param="DistillerConfig.teacher_cache = 'runs/kl_cache'"

A cache is a folder of TFRecord shards plus `manifest.json`, written last (a folder without it
is an unfinished cache). Each record is one augmented, resized example of the training pipeline
(image uint8, boxes, labels, ...), in the order an online run of the same seed reads them,
with the teacher's outputs on it that the configured losses read (``teacher/cls_logits``,
``teacher/features/3``, ...; floats as float16), each a serialized tensor. The manifest
records the teacher's fingerprint (SHA-256 of its detector weights and of its operative
config), the losses and outputs stored, the image size, the augmentation and its seed, and the
number of examples. A run refuses a cache whose teacher, image size or outputs do not match its
own (`check_matches`), naming what differs.

With the cache as its data source the student pipeline skips augmentation and shuffling (the
examples are augmented and shuffled already, keyed by the stored seed), so a cached run trains
on the online run's batches; the Distiller reads the teacher's outputs from the batch. Losses
with adapters still build and train them with the student.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from kdod.checkpoints import DETECTOR_WEIGHTS
from kdod.config import OPERATIVE_CONFIG
from kdod.errors import KdodError
from kdod.files import files_digest

MANIFEST = "manifest.json"
FORMAT = 1
PREFIX = "teacher/"  # Batch keys of cached teacher outputs: teacher/<output>[/<level>].
# Example keys the cache stores besides the teacher's outputs; num_boxes is recomputed when the
# boxes are padded again.
EXAMPLE_KEYS = ("image", "boxes", "labels", "filename", "original_size", "window")


class CacheMismatchError(KdodError, ValueError):
    """A teacher cache cannot serve this run: another teacher, image size or set of outputs."""


class IncompleteCacheError(KdodError):
    """A teacher cache folder lacks its manifest or a shard (unfinished or damaged)."""


def flatten(outputs: Mapping, prefix: str = PREFIX) -> dict[str, tf.Tensor]:
    """Nested outputs ({"features": {3: ...}}) as flat batch keys ("teacher/features/3")."""
    flat = {}
    for key, value in outputs.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def teacher_outputs(batch: Mapping[str, tf.Tensor]) -> dict:
    """The teacher's outputs held in a cached batch, nested as the teacher gives them (levels
    as ints), float16 back to float32."""
    nested: dict = {}
    for key, value in batch.items():
        if not key.startswith(PREFIX):
            continue
        *parents, leaf = [int(part) if part.isdigit() else part
                          for part in key.removeprefix(PREFIX).split("/")]
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = tf.cast(value, tf.float32) if value.dtype == tf.float16 else value
    return nested


def outputs_needed(loss_names: Sequence[str], losses: Sequence,
                   teacher_out: Mapping) -> dict[str, list[str]]:
    """{loss name: the flat keys of the teacher's outputs it reads}.

    A loss lists the outputs it may read in `teacher_outputs` (those the teacher gives count);
    one that lists none may read any, so it gets them all.
    """
    needed = {}
    for name, loss in zip(loss_names, losses):
        wanted = getattr(loss, "teacher_outputs", None)
        chosen = {k: v for k, v in teacher_out.items() if wanted is None or k in wanted}
        needed[name] = sorted(flatten(chosen))
    return needed


def teacher_fingerprint(teacher_dir: str | Path) -> dict[str, str]:
    """SHA-256 of the teacher's weights (a kdod run's detector weights, else every file of the
    folder) and of its operative config (empty for a teacher that is not a kdod run)."""
    folder = Path(teacher_dir)
    weights = folder / DETECTOR_WEIGHTS
    files = [weights] if weights.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    operative = folder / OPERATIVE_CONFIG
    return {"weights_sha256": files_digest(files, folder),
            "config_sha256": files_digest([operative] if operative.is_file() else [], folder)}


def expected_manifest(teacher_dir: str | Path, loss_names: Sequence[str],
                      needed: Mapping[str, list[str]], image_size: int) -> dict:
    """The manifest fields a run checks: its teacher, losses, their outputs, its image size."""
    return {"teacher": {"dir": str(teacher_dir), **teacher_fingerprint(teacher_dir)},
            "losses": list(loss_names), "outputs_needed": dict(needed),
            "teacher_outputs": sorted({key for keys in needed.values() for key in keys}),
            "image_size": image_size}


def load_manifest(path: str | Path) -> dict:
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        raise IncompleteCacheError(
            f"{path} is no finished teacher cache (it has no {MANIFEST}): make it with "
            f"python -m kdod.cache_teacher --gin_file=<the student's recipe> --output={path}")
    return json.loads(manifest.read_text())


def check_matches(path: str | Path, expected: Mapping) -> dict:
    """The manifest of the cache at `path`, if it serves a run of `expected_manifest`; else a
    CacheMismatchError naming every difference."""
    manifest = load_manifest(path)
    differences = []
    for field, what in (("weights_sha256", "weights"), ("config_sha256", "operative config")):
        cached, ours = manifest["teacher"][field], expected["teacher"][field]
        if cached != ours:
            differences.append(f"the teacher's {what} differ (cache: {manifest['teacher']['dir']}"
                               f" sha256 {cached[:12]}, this run: {expected['teacher']['dir']} "
                               f"sha256 {ours[:12]})")
    if manifest["image_size"] != expected["image_size"]:
        differences.append(f"image size {manifest['image_size']} in the cache vs "
                           f"{expected['image_size']} here")
    held = set(manifest["teacher_outputs"])
    for loss, keys in expected["outputs_needed"].items():
        if missing := [key for key in keys if key not in held]:
            differences.append(
                f"{loss} needs the teacher's {', '.join(missing)}, which the cache does not hold "
                f"(it holds {', '.join(sorted(held)) or 'nothing'}, made for the losses "
                f"{', '.join(manifest['losses'])})")
    if differences:
        raise CacheMismatchError(f"The teacher cache {path} does not match this run: "
                                 f"{'; '.join(differences)}. Make a cache for this run with "
                                 f"python -m kdod.cache_teacher.")
    return manifest


def cached_examples(path: str | Path) -> tf.data.Dataset:
    """The examples of the cache at `path`, in the order they were written: the keys of
    EXAMPLE_KEYS (boxes and labels unpadded) and the cached teacher outputs."""
    manifest = load_manifest(path)
    shards = [Path(path) / name for name in manifest["shards"]]
    if absent := [str(shard) for shard in shards if not shard.is_file()]:
        raise IncompleteCacheError(f"The teacher cache {path} lacks {', '.join(absent)}.")
    specs = manifest["features"]
    features = {key: tf.io.FixedLenFeature([], tf.string) for key in specs}

    def parse(record: tf.Tensor) -> dict[str, tf.Tensor]:
        serialized = tf.io.parse_single_example(record, features)
        return {key: tf.ensure_shape(tf.io.parse_tensor(serialized[key], spec["dtype"]),
                                     spec["shape"])
                for key, spec in specs.items()}

    return tf.data.TFRecordDataset([str(s) for s in shards]).map(
        parse, num_parallel_calls=tf.data.AUTOTUNE)


def _examples_of(batch: Mapping[str, tf.Tensor]) -> Iterator[dict[str, np.ndarray]]:
    """The examples of a padded batch with its teacher outputs, boxes and labels unpadded and
    floating teacher outputs as float16. The batch is copied to NumPy once, not sliced and cast as
    eager tensors example by example (one op dispatch each)."""
    arrays = {key: value.numpy() for key, value in batch.items()
              if key in (*EXAMPLE_KEYS, "num_boxes") or key.startswith(PREFIX)}
    for key, value in arrays.items():
        if key.startswith(PREFIX) and np.issubdtype(value.dtype, np.floating):
            arrays[key] = value.astype(np.float16)
    for i in range(len(arrays["image"])):
        count = int(arrays["num_boxes"][i])
        example = {key: arrays[key][i] for key in EXAMPLE_KEYS if key in arrays}
        example["boxes"], example["labels"] = example["boxes"][:count], example["labels"][:count]
        yield example | {key: value[i] for key, value in arrays.items() if key.startswith(PREFIX)}


def _tensor_protos(example: Mapping[str, np.ndarray]) -> dict[str, tensor_pb2.TensorProto]:
    """Each value as the TensorProto that `tf.io.parse_tensor` reads back."""
    return {key: tf.make_tensor_proto(value) for key, value in example.items()}


def _record(protos: Mapping[str, tensor_pb2.TensorProto]) -> bytes:
    feature = {key: tf.train.Feature(bytes_list=tf.train.BytesList(
        value=[proto.SerializeToString()])) for key, proto in protos.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _feature_specs(protos: Mapping[str, tensor_pb2.TensorProto]) -> dict[str, dict]:
    """Each key's dtype and shape; the number of boxes varies from example to example."""
    specs = {}
    for key, proto in protos.items():
        shape = [dim.size for dim in proto.tensor_shape.dim]
        specs[key] = {"dtype": tf.as_dtype(proto.dtype).name,
                      "shape": [None, *shape[1:]] if key in ("boxes", "labels") else shape}
    return specs


def write(path: str | Path, batches: Iterator[Mapping[str, tf.Tensor]], examples: int,
          manifest: Mapping, examples_per_shard: int = 256, verbose: bool = True) -> dict:
    """Writes the first `examples` examples of `batches` (padded batches holding the teacher's
    outputs under PREFIX keys) to shards in `path`, then the manifest: `manifest` (from
    `expected_manifest`, plus what the caller records) with the shards, features, count and
    the seconds it took (the teacher's forward passes included)."""
    start = time.perf_counter()
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).unlink(missing_ok=True)  # Unfinished until the new one is written.
    progress = keras.utils.Progbar(examples, unit_name="example", verbose=int(verbose))
    shards: list[str] = []
    specs: dict[str, dict] = {}
    written, writer = 0, None
    while written < examples:
        for example in _examples_of(next(batches)):
            if written == examples:
                break
            if written % examples_per_shard == 0:
                if writer:
                    writer.close()
                shards.append(f"shard-{len(shards):05d}.tfrecord")
                writer = tf.io.TFRecordWriter(str(folder / shards[-1]))
            protos = _tensor_protos(example)
            specs = specs or _feature_specs(protos)
            writer.write(_record(protos))
            written += 1
        progress.update(written)
    if writer:
        writer.close()
    result = {**manifest, "format": FORMAT, "examples": written, "shards": shards,
              "features": specs, "seconds": time.perf_counter() - start}
    (folder / MANIFEST).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def bytes_per_example(path: str | Path) -> float:
    """The cache's size on disk divided by its examples."""
    manifest = load_manifest(path)
    size = sum((Path(path) / name).stat().st_size for name in manifest["shards"])
    return size / max(manifest["examples"], 1)


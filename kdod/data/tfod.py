"""TF Object Detection API interop: its TFRecord `tf.train.Example`s and `label_map.pbtxt`.

Reading gives the dicts `kdod.data.pipeline` works on (image uint8 RGB, boxes float32 [N, 4]
normalized ymin, xmin, ymax, xmax, labels int32 0-based, filename, original_size), so a
`train.record` from the original workflow trains as it is. Writing produces what the TF OD
API's own `create_*_tf_record.py` scripts write (class ids 1-based, as in its label maps).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from PIL import Image

from kdod.errors import KdodError

LABEL_MAP_NAME = "label_map.pbtxt"
BOX_KEYS = ("image/object/bbox/ymin", "image/object/bbox/xmin",
            "image/object/bbox/ymax", "image/object/bbox/xmax")
LABEL_KEY = "image/object/class/label"
TEXT_KEY = "image/object/class/text"
REQUIRED_KEYS = ("image/encoded", *BOX_KEYS)


class TfodError(KdodError):
    """TF OD API files that are missing or not in the expected format."""


class DamagedRecordsError(KdodError):
    """A TFRecord file (TF OD API records, a TFDS data set's) is truncated or its bytes changed."""


# ---------------------------------------------------------------- label maps


def read_label_map(path: str | Path) -> dict[int, str]:
    """{id: name} from a TF OD API label_map.pbtxt (ids are 1-based; 0 is background)."""
    path = Path(path)
    if not path.is_file():
        raise TfodError(f"Label map {path} not found.")
    text = re.sub(r"#.*", "", path.read_text())
    items = re.findall(r"item\s*\{([^}]*)\}", text)
    if not items:
        raise TfodError(f"{path} holds no `item {{ id: ... name: ... }}` entries.")
    label_map = {}
    for body in items:
        id_match = re.search(r"\bid\s*:\s*(\d+)", body)
        name_match = (re.search(r"\bname\s*:\s*['\"]([^'\"]*)['\"]", body)
                      or re.search(r"\bdisplay_name\s*:\s*['\"]([^'\"]*)['\"]", body))
        if not id_match or not name_match:
            raise TfodError(f"{path}: an item without id or name: {{{body.strip()}}}")
        label_map[int(id_match.group(1))] = name_match.group(1)
    return label_map


def write_label_map(path: str | Path, names: Sequence[str]) -> Path:
    """Writes names as items with ids 1, 2, ... (kdod label i is TF OD id i + 1)."""
    path = Path(path)
    path.write_text("".join(f"item {{\n  id: {i}\n  name: '{name}'\n}}\n"
                            for i, name in enumerate(names, start=1)))
    return path


# ---------------------------------------------------------------- reading


def load_tfod_records(file_pattern: str, label_map_path: str | Path | None = None,
                      shuffle_files: bool = False) -> tf.data.Dataset:
    """TF OD API records as kdod examples.

    Labels are `image/object/class/label - 1`. Records without class labels need a label map
    (by default `label_map.pbtxt` beside the records, when there is one) to map
    `image/object/class/text` to ids.
    """
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise TfodError(f"No TFRecord file matches {file_pattern!r}.")
    for path in files:
        count_records(path)  # Damage fails here, naming the file, not deep in a run.
    keys = _check_first_record(files[0])
    label_map_path = label_map_path or _label_map_beside(files[0])
    label_map = read_label_map(label_map_path) if label_map_path else None
    _check_first_records(files[0], label_map, label_map_path)
    text_to_label = None
    if LABEL_KEY not in keys:
        if label_map is None:
            raise TfodError(f"Records in {files[0]} have no {LABEL_KEY}: give the label map "
                            "that maps their class text to ids.")
        text_to_label = _text_lookup(label_map)
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffle_files:
        dataset = dataset.shuffle(len(files))
    return tf.data.TFRecordDataset(dataset).map(
        lambda record: _to_example(record, text_to_label), num_parallel_calls=tf.data.AUTOTUNE)


def _label_map_beside(record_file: str) -> str | None:
    candidate = Path(record_file).parent / LABEL_MAP_NAME
    return str(candidate) if candidate.is_file() else None


def count_records(path: str, chunk: int = 1024) -> int:
    """The records of a TFRecord file, read through once (in chunks: 30 times faster than one by
    one). TFRecords carry checksums: a damaged file (truncated, bytes changed) is a
    DamagedRecordsError naming it and the records read before the damage."""
    count = 0
    try:
        for records in tf.data.TFRecordDataset(path).batch(chunk):
            count += len(records)
    except tf.errors.DataLossError as error:
        count += _records_before_damage(path, count)
        reason = re.search(r"(truncated|corrupted) record at \d+", error.message)
        detail = f" ({reason.group(0)})" if reason else ""
        what = (f"is damaged after {count} records{detail}" if count else
                f"is not a TFRecord file, or is damaged in its first record{detail}")
        raise DamagedRecordsError(f"{path} {what}: copy or write it again.") from None
    return count


def _records_before_damage(path: str, skip: int) -> int:
    """How many records after the first `skip` read before a DataLossError."""
    count = 0
    with contextlib.suppress(tf.errors.DataLossError):
        for _ in tf.data.TFRecordDataset(path).skip(skip):
            count += 1
    return count


def _check_first_record(path: str) -> set[str]:
    """The feature keys of the first record; a clear error when needed ones are missing."""
    first = next(iter(tf.data.TFRecordDataset(path).take(1)), None)
    if first is None:
        raise TfodError(f"{path} holds no records.")
    try:
        keys = set(tf.train.Example.FromString(first.numpy()).features.feature)
    except DecodeError as error:
        raise TfodError(f"{path}: the first record is not a tf.train.Example ({error}).") from None
    missing = [key for key in REQUIRED_KEYS if key not in keys]
    if LABEL_KEY not in keys and TEXT_KEY not in keys:
        missing.append(f"{LABEL_KEY} or {TEXT_KEY}")
    if missing:
        raise TfodError(f"{path}: records lack {', '.join(missing)}; keys present: "
                        f"{', '.join(sorted(keys))}. Expected the TF Object Detection API "
                        "format.")
    return keys


def _check_first_records(path: str, label_map: dict[int, str] | None,
                         label_map_path: str | Path | None, count: int = 200) -> None:
    """The first `count` records must hold boxes (a file without any trains nothing: often the
    boxes were written under other keys) and, with a label map, only its class ids and names
    (records and a label map that do not belong together would train on the wrong classes)."""
    ids, texts, with_boxes, seen = set(), set(), 0, 0
    for record in tf.data.TFRecordDataset(path).take(count):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        ids.update(feature[LABEL_KEY].int64_list.value if LABEL_KEY in feature else ())
        texts.update(t.decode() for t in (feature[TEXT_KEY].bytes_list.value
                                          if TEXT_KEY in feature else ()))
        with_boxes += bool(feature[BOX_KEYS[0]].float_list.value)
        seen += 1
    if not with_boxes:
        raise TfodError(f"{path}: none of its first {seen} records holds a box "
                        f"({BOX_KEYS[0]} is empty in all); a detector cannot train on them.")
    if label_map is None:
        return
    unknown_ids, unknown_texts = ids - set(label_map), texts - set(label_map.values())
    if unknown_ids or unknown_texts:
        found = ", ".join([*map(str, sorted(unknown_ids)), *map(repr, sorted(unknown_texts))])
        raise TfodError(f"{path}: class ids or names {found} are not in the label map "
                        f"{label_map_path} ({label_map}); the records and the label map do not "
                        "belong together.")


def _text_lookup(label_map: dict[int, str]) -> tf.lookup.StaticHashTable:
    names = list(label_map.values())
    labels = [i - 1 for i in label_map]
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(names, tf.constant(labels, tf.int64)),
        default_value=-1)


_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/source_id": tf.io.FixedLenFeature([], tf.string, default_value=""),
    LABEL_KEY: tf.io.VarLenFeature(tf.int64),
    TEXT_KEY: tf.io.VarLenFeature(tf.string),
    **{key: tf.io.VarLenFeature(tf.float32) for key in BOX_KEYS},
}


def _to_example(record: tf.Tensor, text_to_label: tf.lookup.StaticHashTable | None) -> dict:
    parsed = tf.io.parse_single_example(record, _FEATURES)
    image = tf.io.decode_image(parsed["image/encoded"], channels=3, expand_animations=False)
    boxes = tf.stack([tf.sparse.to_dense(parsed[key]) for key in BOX_KEYS], axis=-1)
    if text_to_label is None:
        labels = tf.sparse.to_dense(parsed[LABEL_KEY]) - 1
    else:
        labels = text_to_label.lookup(tf.sparse.to_dense(parsed[TEXT_KEY]))
        check = tf.debugging.assert_non_negative(
            labels, message="A class text of a record is not in the label map.")
        with tf.control_dependencies([check]):
            labels = tf.identity(labels)
    filename = parsed["image/filename"]
    return {
        "image": image,
        "boxes": tf.reshape(boxes, [-1, 4]),
        "labels": tf.cast(labels, tf.int32),
        "filename": tf.where(filename == "", parsed["image/source_id"], filename),
        "original_size": tf.shape(image)[:2],
    }


# ---------------------------------------------------------------- writing


def write_tfod_records(dataset_examples: Iterable[dict], path: str | Path,
                       class_names: Sequence[str] = ("plate",)) -> int:
    """Writes examples as TF OD API records; returns how many were written.

    Each example: `image` (encoded JPEG/PNG bytes, written as they are, or a uint8 HxWx3
    array, written as PNG), `boxes` [N, 4] normalized ymin, xmin, ymax, xmax, `labels` [N]
    0-based, `filename`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written as partial-<name>, renamed when whole: an error or a kill midway never leaves half
    # a file under `path`, nor destroys the one already there.
    partial = path.with_name("partial-" + path.name)
    count = 0
    try:
        with tf.io.TFRecordWriter(str(partial)) as writer:
            for example in dataset_examples:
                writer.write(tfod_example(example, class_names).SerializeToString())
                count += 1
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return count


def tfod_example(example: dict, class_names: Sequence[str]) -> tf.train.Example:
    """One kdod example as a TF OD API `tf.train.Example`."""
    encoded, image_format, (width, height) = _encoded_image(example["image"])
    boxes = np.asarray(example["boxes"], np.float32).reshape(-1, 4)
    labels = np.asarray(example["labels"], np.int64).reshape(-1)
    filename = _as_bytes(example["filename"])
    feature = {
        "image/encoded": _bytes([encoded]),
        "image/format": _bytes([image_format]),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/filename": _bytes([filename]),
        "image/source_id": _bytes([filename]),
        "image/object/class/text": _bytes([class_names[i].encode() for i in labels]),
        "image/object/class/label": _ints(labels + 1),
    }
    for column, key in enumerate(BOX_KEYS):
        feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=boxes[:, column]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _encoded_image(image: bytes | np.ndarray) -> tuple[bytes, bytes, tuple[int, int]]:
    """(bytes, b"jpeg" | b"png", (width, height)); arrays are encoded losslessly as PNG."""
    if isinstance(image, np.ndarray):
        buffer = io.BytesIO()
        Image.fromarray(image.astype(np.uint8)).save(buffer, format="PNG")
        return buffer.getvalue(), b"png", (image.shape[1], image.shape[0])
    with Image.open(io.BytesIO(image)) as opened:  # Header only: nothing is decoded.
        return image, opened.format.lower().encode(), opened.size


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _ints(values: Iterable[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))

"""TF OD API interop: kdod data set -> TF OD API TFRecord -> kdod data source, and errors."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from kdod import to_tfrecord
from kdod.data import pipeline, tfod
from kdod.errors import KdodError

REPO = Path(__file__).resolve().parents[1]
CAR_DUMMY = REPO / "tfds_builders" / "car_plates" / "dummy_data"


@pytest.fixture(scope="module")
def car_plates_data_dir(tmp_path_factory) -> str:
    """car_plates built from its dummy_data (PNG images, one with two plates)."""
    import tfds_builders  # noqa: F401

    data_dir = str(tmp_path_factory.mktemp("car_plates_data"))
    tfds.builder("car_plates", data_dir=data_dir).download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(CAR_DUMMY)))
    return data_dir


def by_filename(dataset: tf.data.Dataset) -> dict[str, dict]:
    return {example["filename"].decode(): example for example in tfds.as_numpy(dataset)}


def assert_same_examples(expected: dict[str, dict], actual: dict[str, dict]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, example in expected.items():
        np.testing.assert_array_equal(actual[name]["image"], example["image"])
        np.testing.assert_array_equal(actual[name]["boxes"], example["boxes"])
        np.testing.assert_array_equal(actual[name]["labels"], example["labels"])
        np.testing.assert_array_equal(actual[name]["original_size"], example["original_size"])


@pytest.mark.parametrize("dataset,split", [("car_plates", "train"),
                                           ("synthetic_plates/tiny", "validation")])
def test_round_trip_gives_the_same_images_and_boxes(dataset, split, tmp_path, request):
    fixture = "car_plates_data_dir" if dataset == "car_plates" else "tiny_data_dir"
    data_dir = request.getfixturevalue(fixture)
    output = tmp_path / "records" / f"{split}.record"
    count, label_map = to_tfrecord.convert(dataset, split, output, data_dir)
    expected = by_filename(pipeline.load_examples(dataset, split, data_dir))
    assert count == len(expected) > 0
    assert tfod.read_label_map(label_map) == {1: "plate"}
    source = f"tfrecord:{tmp_path}/records/{{split}}.record,label_map={label_map}"
    assert_same_examples(expected, by_filename(pipeline.load_examples(source, split)))


def test_records_follow_the_tf_od_api_format(car_plates_data_dir, tmp_path):
    output = tmp_path / "train.record"
    to_tfrecord.convert("car_plates", "train", output, car_plates_data_dir)
    records = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(output)]
    two_plates = next(r.features.feature for r in records
                      if r.features.feature["image/filename"].bytes_list.value == [b"Cars1.png"])
    assert two_plates["image/format"].bytes_list.value == [b"png"]
    assert two_plates["image/width"].int64_list.value == [150]
    assert two_plates["image/height"].int64_list.value == [100]
    assert two_plates["image/object/class/label"].int64_list.value == [1, 1]
    assert two_plates["image/object/class/text"].bytes_list.value == [b"plate", b"plate"]
    np.testing.assert_allclose(two_plates["image/object/bbox/xmin"].float_list.value,
                               [10 / 150, 90 / 150], rtol=1e-6)


def test_arrays_are_written_as_png_and_text_maps_through_the_label_map(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (12, 20, 3), dtype=np.uint8)
    example = {"image": image, "boxes": [[0.1, 0.2, 0.5, 0.6]], "labels": [1],
               "filename": "a.png"}
    record = tfod.tfod_example(example, ["car", "plate"])
    del record.features.feature[tfod.LABEL_KEY]  # Some writers give only the class text.
    path = tmp_path / "only_text.record"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(record.SerializeToString())
    tfod.write_label_map(tmp_path / "label_map.pbtxt", ["car", "plate"])
    (loaded,) = tfds.as_numpy(tfod.load_tfod_records(str(path)))
    np.testing.assert_array_equal(loaded["image"], image)
    np.testing.assert_allclose(loaded["boxes"], [[0.1, 0.2, 0.5, 0.6]])
    assert loaded["labels"].tolist() == [1]


def test_label_map_in_the_tf_od_api_style_is_read(tmp_path):
    path = tmp_path / "label_map.pbtxt"
    path.write_text('# plates\nitem {\n  name: "licence"\n  id: 1\n}\n'
                    "item { id: 2 display_name: 'car' }\n")
    assert tfod.read_label_map(path) == {1: "licence", 2: "car"}


def test_missing_files_and_foreign_records_fail_clearly(tmp_path):
    with pytest.raises(tfod.TfodError, match="No TFRecord file matches"):
        tfod.load_tfod_records(str(tmp_path / "nothing*.record"))
    with pytest.raises(tfod.TfodError, match="not found"):
        tfod.read_label_map(tmp_path / "label_map.pbtxt")
    path = tmp_path / "foreign.record"
    foreign = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}))
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(foreign.SerializeToString())
    with pytest.raises(tfod.TfodError, match="lack image/object/bbox/ymin"):
        tfod.load_tfod_records(str(path))


def test_records_mix_with_tfds_sources_in_the_input_pipeline(car_plates_data_dir, tmp_path):
    output = tmp_path / "train.record"
    to_tfrecord.convert("car_plates", "train", output, car_plates_data_dir)
    sources = [("car_plates", "train", 1.0), (f"tfrecord:{output}", "train", 1.0)]
    batches = pipeline.input_pipeline(sources, image_size=64, batch_size=4, seed=0,
                                      shuffle_buffer=8, data_dir=car_plates_data_dir)
    batch = next(iter(batches))
    assert batch["image"].shape == (4, 64, 64, 3)
    assert batch["boxes"].shape == (4, 32, 4)


def test_a_tfds_source_can_name_its_manual_folder(tmp_path):
    """'car_plates,manual_dir=...': a Kaggle-layout folder (the real test sample) as a source."""
    source = f"car_plates,manual_dir={CAR_DUMMY}"
    examples = by_filename(pipeline.load_examples(source, "all", data_dir=str(tmp_path)))
    assert sorted(examples) == sorted(p.with_suffix(".png").name
                                      for p in (CAR_DUMMY / "annotations").glob("*.xml"))
    with pytest.raises(KdodError, match="unknown option 'manual'; .* takes manual_dir"):
        pipeline.load_examples(f"car_plates,manual={CAR_DUMMY}", "all")
    with pytest.raises(KdodError, match="unknown option 'manual_dir'; .* takes label_map"):
        pipeline.load_examples(f"tfrecord:{tmp_path}/x.record,manual_dir=/x", "train")


def test_records_and_a_label_map_that_do_not_belong_together_fail_clearly(tmp_path):
    example = {"image": np.zeros([8, 8, 3], np.uint8), "boxes": [[0.1, 0.1, 0.5, 0.5]],
               "labels": [1], "filename": "a.png"}
    tfod.write_tfod_records([example], tmp_path / "train.record", ["car", "plate"])
    tfod.write_label_map(tmp_path / "other.pbtxt", ["plate"])  # id 1 only: 'plate' is id 2.
    with pytest.raises(tfod.TfodError, match=r"names 2 are not in the label map .*other.pbtxt"):
        tfod.load_tfod_records(str(tmp_path / "train.record"), tmp_path / "other.pbtxt")


def test_records_without_any_box_fail_clearly(tmp_path):
    examples = [{"image": np.zeros([8, 8, 3], np.uint8), "boxes": np.zeros([0, 4]),
                 "labels": [], "filename": f"{i}.png"} for i in range(3)]
    tfod.write_tfod_records(examples, tmp_path / "train.record")
    with pytest.raises(tfod.TfodError, match=r"none of its first 3 records holds a box"):
        tfod.load_tfod_records(str(tmp_path / "train.record"))


def _record_end(path: Path, records: int) -> int:
    """The byte offset where the first `records` records of a TFRecord file end."""
    data, offset = path.read_bytes(), 0
    for _ in range(records):  # Each: length (8 bytes), its CRC (4), the data, the data's CRC (4).
        offset += 16 + struct.unpack("<Q", data[offset:offset + 8])[0]
    return offset


def _truncate(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def _three_examples():
    return [{"image": np.full([8, 8, 3], i, np.uint8), "boxes": [[0.1, 0.1, 0.5, 0.5]],
             "labels": [0], "filename": f"{i}.png"} for i in range(3)]


def test_records_truncated_after_the_first_fail_naming_the_file_and_the_count(tmp_path):
    path = tmp_path / "train.record"
    tfod.write_tfod_records(_three_examples(), path)
    _truncate(path, _record_end(path, 1) + 20)  # Cut in the middle of the second record.
    message = rf"{path} is damaged after 1 records \(truncated record at \d+\)"
    with pytest.raises(tfod.DamagedRecordsError, match=message):
        pipeline.load_examples(f"tfrecord:{path}", "train")
    with pytest.raises(tfod.DamagedRecordsError, match=message):  # Evaluation reads them so.
        pipeline.input_pipeline([(f"tfrecord:{path}", "test", 1.0)], image_size=32,
                                training=False)


def test_a_damaged_tfds_file_fails_naming_it_also_as_to_tfrecord_input(tiny_data_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_data_dir, data_dir)
    (shard,) = data_dir.glob("synthetic_plates/tiny/*/synthetic_plates-train.tfrecord-*")
    output = tmp_path / "out" / "train.record"
    _truncate(shard, _record_end(shard, 5) + 20)
    with pytest.raises(tfod.DamagedRecordsError, match=rf"{shard} is damaged after 5 records"):
        to_tfrecord.convert("synthetic_plates/tiny", "train", output, str(data_dir))
    _truncate(shard, _record_end(shard, 5))  # Cut at a record's end: no checksum can tell.
    with pytest.raises(tfod.DamagedRecordsError, match=rf"{shard} holds 5 records where its "
                                                       r"data set's info says 24"):
        pipeline.load_examples("synthetic_plates/tiny", "train", str(data_dir))
    assert not output.exists()


def test_writing_records_that_fails_midway_keeps_the_file_already_there(tmp_path):
    path = tmp_path / "train.record"
    path.write_bytes(b"the records of an earlier run")

    def examples_then_failure():
        yield from _three_examples()[:2]
        raise OSError("the source went away")

    with pytest.raises(OSError, match="went away"):
        tfod.write_tfod_records(examples_then_failure(), path)
    assert path.read_bytes() == b"the records of an earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.record"]

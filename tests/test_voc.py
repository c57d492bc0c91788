"""Bad input for the Kaggle VOC builders (tfds_builders/voc/), and the real car_plates sample."""

from __future__ import annotations

import io
import logging
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import tfds_builders  # noqa: F401  Registers the builders.
from tfds_builders.car_plates import car_plates_dataset_builder as car_plates
from tfds_builders.voc.annotations import (
    UnknownClassError,
    check_class_names,
    normalized_boxes,
    parse_annotation,
)
from tfds_builders.voc.archives import UnsafeArchiveError, open_archive
from tfds_builders.voc.builder import pair_files, split_of, split_sizes
from tfds_builders.voc.images import load_image
from tfds_builders.voc.kaggle import MissingArchiveError
from tfds_builders.voc.report import PrepReport, SkipExample

REPO = Path(__file__).resolve().parents[1]
CAR_DUMMY = REPO / "tfds_builders" / "car_plates" / "dummy_data"
REAL_SAMPLE = REPO.parent / "shared" / "data" / "car-plate-detection-sample"
SOURCE = car_plates.Builder.SOURCE


def voc_xml(filename: str, size: tuple[int, int] | None, boxes, name: str = "licence") -> bytes:
    size_tag = f"<size><width>{size[0]}</width><height>{size[1]}</height></size>" if size else ""
    objects = "".join(f"<object><name>{name}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}"
                      f"</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                      for b in boxes)
    return f"<annotation><filename>{filename}</filename>{size_tag}{objects}</annotation>".encode()


def png_bytes(width: int, height: int, mode: str = "RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), (90, 120, 150, 255)[:len(mode)]).save(buffer, "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming a size in its IHDR, with an empty IDAT: no pixel data at all."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"")


def write_pair(root: Path, stem: str, image: bytes | None, xml: bytes | None) -> None:
    for folder, suffix, data in (("images", ".png", image), ("annotations", ".xml", xml)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        if data is not None:
            (root / folder / f"{stem}{suffix}").write_bytes(data)


def report() -> PrepReport:
    return PrepReport("test", ["train", "validation", "test"])


def prepare(manual_dir: Path, data_dir: Path) -> tfds.core.DatasetBuilder:
    builder = car_plates.Builder(data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(manual_dir)))
    return builder


def test_unpaired_files_are_skipped_and_counted():
    names = ["images/a.png", "annotations/a.xml", "images/b.png", "annotations/c.xml",
             "__MACOSX/images/._a.png", "images/readme.txt"]
    counts = report()
    pairs = pair_files(names, SOURCE, counts)
    assert [p.stem for p in pairs] == ["a"]
    assert counts.counts["image_without_annotation"] == 1
    assert counts.counts["annotation_without_image"] == 1


@pytest.mark.parametrize("data", [b"not an image at all", png_bytes(64, 48)[:-40]],
                         ids=["corrupt", "truncated"])
def test_corrupt_or_truncated_image_is_skipped(data):
    with pytest.raises(SkipExample) as raised:
        load_image(data, "images/bad.png")
    assert raised.value.reason == "corrupt_image"
    assert "images/bad.png" in str(raised.value)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("size", [(12000, 10000), (60000, 60000)])
def test_image_above_the_pixel_limit_is_refused_from_its_header(size):
    # Decoded, these would take 360 MB and 10 GB; the header alone must be enough to refuse
    # them (they hold no pixel data: decoding would fail as corrupt instead).
    with pytest.raises(SkipExample) as raised:
        load_image(png_header_only(*size), "images/huge.png")
    assert raised.value.reason == "image_too_large"
    with pytest.raises(SkipExample, match="above the limit of 100"):
        load_image(png_bytes(20, 10), "images/small.png", max_pixels=100)


def test_images_become_rgb_and_rgb_jpeg_bytes_are_kept():
    stored, size = load_image(png_bytes(30, 20, "RGBA"), "a.png")
    assert size == (30, 20) and Image.open(io.BytesIO(stored)).mode == "RGB"
    grey = io.BytesIO()
    Image.new("L", (8, 8), 7).save(grey, "PNG")
    assert Image.open(io.BytesIO(load_image(grey.getvalue(), "g.png")[0])).mode == "RGB"
    jpeg = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(jpeg, "JPEG")
    assert load_image(jpeg.getvalue(), "a.jpeg")[0] == jpeg.getvalue()


@pytest.mark.parametrize("xml", [
    b"<annotation><object><name>licence</name>",
    (b"<annotation><object><name>licence</name><bndbox><xmin>x</xmin></bndbox></object>"
     b"</annotation>"),
    b'<!DOCTYPE a [<!ENTITY e "boom">]><annotation>&e;</annotation>',
], ids=["unclosed", "bad-number", "dtd"])
def test_malformed_xml_is_skipped_with_the_file_named(xml):
    with pytest.raises(SkipExample, match="annotations/Cars9.xml") as raised:
        parse_annotation(xml, "annotations/Cars9.xml")
    assert raised.value.reason == "malformed_xml"


def test_boxes_outside_are_clipped_and_degenerate_dropped():
    counts = report()
    boxes = normalized_boxes(
        [(-10, 5, 50, 25), (20, 10, 20, 30), (120, 0, 150, 10), (10, 10, 30, 20)],
        100, 50, "a.xml", counts)
    np.testing.assert_allclose(boxes, [[0.1, 0.0, 0.5, 0.5], [0.2, 0.1, 0.4, 0.3]])
    assert counts.counts["boxes_clipped"] == 1
    assert counts.counts["boxes_dropped"] == 2  # zero width; wholly outside


def test_unknown_class_fails_with_the_known_names():
    annotation = parse_annotation(voc_xml("a.png", None, [(1, 2, 3, 4)], "car"), "a.xml")
    with pytest.raises(UnknownClassError, match="'car'; known: licence"):
        check_class_names(annotation, "a.xml", SOURCE)


@pytest.mark.parametrize("member", ["../evil.png", "images/../../evil.png", "/etc/evil.png",
                                    "C:\\evil.png", "images\\..\\..\\evil.png"])
def test_zip_member_escaping_the_folder_is_refused(tmp_path, member):
    path = tmp_path / "car-plate-detection.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images/Cars0.png", b"x")
        archive.writestr(member, b"x")
    with pytest.raises(UnsafeArchiveError, match="outside"):
        open_archive(path)


def test_symlink_out_of_an_unpacked_folder_is_refused(tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    (tmp_path / "archive" / "images").mkdir(parents=True)
    (tmp_path / "archive" / "images" / "Cars0.png").symlink_to(outside)
    with pytest.raises(UnsafeArchiveError, match="outside"):
        open_archive(tmp_path / "archive").read("images/Cars0.png")


def test_split_rule_is_fixed():
    assert [split_of(f"Cars{i}") for i in (0, 2, 34)] == ["train", "test", "validation"]
    assert split_sizes([f"Cars{i}" for i in range(433)]) == {
        "train": 346, "validation": 51, "test": 36}
    assert split_sizes([f"N{i}" for i in range(1, 229)]) == {
        "train": 183, "validation": 15, "test": 30}


def test_missing_archive_error_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no_kaggle"))
    with pytest.raises(MissingArchiveError, match="andrewmvd/car-plate-detection"):
        prepare(tmp_path / "empty_manual", tmp_path / "data")


def zip_folder(folder: Path, path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*.*")):
            archive.write(file, file.relative_to(folder).as_posix())


def test_the_other_sets_archive_is_not_taken_for_this_one(tmp_path):
    # Both sets download from the Kaggle page as archive.zip.
    (tmp_path / "manual").mkdir()
    zip_folder(REPO / "tfds_builders" / "number_plates" / "dummy_data",
               tmp_path / "manual" / "archive.zip")
    with pytest.raises(MissingArchiveError, match="no image with its annotation"):
        prepare(tmp_path / "manual", tmp_path / "data")


def test_zip_in_the_manual_folder_is_read_in_place(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    zip_folder(CAR_DUMMY, manual / "car-plate-detection.zip")
    builder = prepare(manual, tmp_path / "data")
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
        "train": 3, "validation": 1, "test": 2}


def test_bad_input_is_counted_in_one_log_line(tmp_path, caplog):
    manual = tmp_path / "manual"
    shutil.copytree(CAR_DUMMY, manual)
    write_pair(manual, "Cars100", png_bytes(40, 20), None)  # no annotation
    write_pair(manual, "Cars101", None, voc_xml("Cars101.png", (40, 20), [(1, 1, 9, 9)]))
    write_pair(manual, "Cars102", b"garbage", voc_xml("Cars102.png", (40, 20), [(1, 1, 9, 9)]))
    write_pair(manual, "Cars103", png_bytes(40, 20), b"<annotation>")
    write_pair(manual, "Cars104", png_bytes(40, 20),
               voc_xml("Cars104.png", (40, 20), [(-5, 2, 30, 18), (5, 5, 5, 9), (2, 2, 9, 9)]))
    write_pair(manual, "Cars105", png_bytes(40, 20), voc_xml("Cars105.png", (80, 40), []))
    with caplog.at_level(logging.INFO, logger="tfds_builders.voc"):
        builder = prepare(manual, tmp_path / "data")
    lines = [r.getMessage() for r in caplog.records if "prepared" in r.getMessage()]
    assert len(lines) == 1, lines
    for count in ("examples=7,", "boxes=9,", "image_without_annotation=1,",
                  "annotation_without_image=1,", "corrupt_image=1,", "malformed_xml=1,",
                  "size_mismatch=1,", "boxes_clipped=1,", "boxes_dropped=1"):
        assert count in lines[0], (count, lines[0])
    assert any("Cars103.xml" in r.getMessage() for r in caplog.records)
    assert sum(split.num_examples for split in builder.info.splits.values()) == 7


@pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason=f"{REAL_SAMPLE} is not there")
def test_real_car_plates_sample_matches_its_xml(tmp_path):
    builder = prepare(REAL_SAMPLE, tmp_path / "data")
    expected = {}  # file name -> pixel boxes from the XML
    for xml in sorted((REAL_SAMPLE / "annotations").glob("*.xml")):
        annotation = parse_annotation(xml.read_bytes(), xml.name)
        expected[f"{xml.stem}.png"] = (annotation.size, [b[1:] for b in annotation.boxes])
    seen = {}
    for split in ("train", "validation", "test"):
        for example in tfds.as_numpy(builder.as_dataset(split=split)):
            height, width, channels = example["image"].shape
            assert channels == 3
            ymin, xmin, ymax, xmax = example["objects"]["bbox"].T
            seen[example["image/filename"].decode()] = (
                (width, height), np.stack([xmin * width, ymin * height,
                                           xmax * width, ymax * height], axis=-1))
    assert len(seen) == len(expected) == 87
    assert sum(len(boxes) for _, boxes in seen.values()) == sum(
        len(boxes) for _, boxes in expected.values())
    for name, (size, boxes) in expected.items():
        assert seen[name][0] == size
        np.testing.assert_allclose(seen[name][1], np.reshape(boxes, (-1, 4)), atol=1e-3)


def _resolved(value):
    """A gin binding with its macros evaluated, as the configurable will receive it."""
    if isinstance(value, (list, tuple)):
        return type(value)(_resolved(item) for item in value)
    return _resolved(value.scoped_configurable_fn()) if hasattr(value, "selector") else value


@pytest.mark.parametrize("gin_files,params,expected", [
    (["data/kaggle_combined.gin"], [],
     [("car_plates", "train", 2.0), ("number_plates", "train", 1.0)]),
    (["data/kaggle_and_synthetic.gin"], ["SYNTHETIC_WEIGHT = 0.5"],
     [("car_plates", "train", 2.0), ("number_plates", "train", 1.0),
      ("synthetic_plates/quick", "train", 0.5)]),
    (["data/kaggle_and_synthetic.gin"],
     ["input_pipeline.sources = [%NUMBER_PLATES_TRAIN, %SYNTHETIC_TRAIN]"],
     [("number_plates", "train", 1.0), ("synthetic_plates/quick", "train", 3.0)]),
    (["data/kaggle_combined.gin", "data/synthetic_quick.gin"], [],
     [("synthetic_plates/quick", "train", 1.0)]),  # A later file replaces the sources.
])
def test_kaggle_gin_files_mix_the_sets(gin_files, params, expected, clean_gin):
    import gin

    from kdod import config

    config.parse_gin(["student_small.gin", *gin_files], params)
    assert _resolved(gin.query_parameter("input_pipeline.sources")) == expected


def test_failed_kaggle_download_says_so_and_how_to_do_it_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-key")
    monkeypatch.setenv("PATH", str(tmp_path))  # No `kaggle` command: the download fails.
    with pytest.raises(MissingArchiveError, match="Kaggle download of .* failed") as raised:
        prepare(tmp_path / "empty_manual", tmp_path / "data")
    assert "car-plate-detection.zip" in str(raised.value)

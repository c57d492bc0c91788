"""Pseudo-labels for plate_ctc: the keep rule on hand-made engine readings, the boxes that cannot
be cut, and a run of real engines (Tesseract, RapidOCR) over TF OD API records of rendered
scenes, read back as the recognizer's training CSV."""

import csv
import importlib.util
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import render_plate
from PIL import Image

from kdod.data import tfod
from kdod.errors import KdodError
from kdod.ocr import crop_sets, cropping, pseudo_labels
from kdod.ocr.base import OcrSetupError, PlateRead
from kdod.ocr.pseudo_labels import PseudoLabel, choose_label
from kdod.registry import UnknownComponentError

# ---------------------------------------------------------------- the keep rule


def reads(*readings: tuple[str, float]) -> dict[str, PlateRead]:
    """Engine readings {engine0: PlateRead, ...} from (text, score) pairs."""
    return {f"engine{i}": PlateRead(text, score) for i, (text, score) in enumerate(readings)}


@pytest.mark.parametrize("readings, min_agree, expected", [
    # Two of three agree, at low scores: kept, even against a third engine's confident text.
    ((("AB123", 0.3), ("AB123", 0.2), ("XY987", 0.99)), 2, PseudoLabel("AB123", "agree")),
    # Compared as labels: the letter O is the digit 0, separators and case do not count.
    ((("BO12", 0.4), ("b0-12", 0.5)), 2, PseudoLabel("B012", "agree")),
    # No agreement: the one confident reading.
    ((("AB123", 0.97), ("XY987", 0.5)), 2, PseudoLabel("AB123", "confident")),
    ((("AB123", 0.97), ("", 0.0)), 2, PseudoLabel("AB123", "confident")),
    # Agreeing below min_agree is no agreement.
    ((("AB123", 0.6), ("AB123", 0.6), ("XY987", 0.96)), 3, PseudoLabel("XY987", "confident")),
    # Neither rule: different texts, none confident, or two confident ones that differ.
    ((("AB123", 0.6), ("XY987", 0.5)), 2, PseudoLabel("", "disagree")),
    ((("AB123", 0.99), ("XY987", 0.98)), 2, PseudoLabel("", "disagree")),
    # With min_agree 1, two different single readings tie: neither wins by agreement.
    ((("AB123", 0.6), ("XY987", 0.5)), 1, PseudoLabel("", "disagree")),
    ((("AB123", 0.6),), 1, PseudoLabel("AB123", "agree")),
    # Texts no plate label can hold count as no reading: too long, too short.
    ((("ABCDE123456", 0.99), ("ABCDE123456", 0.99)), 2, PseudoLabel("", "empty")),
    ((("A", 0.99), ("", 0.0)), 2, PseudoLabel("", "empty")),
    ((("ABCDE123456", 0.99), ("AB123", 0.96)), 2, PseudoLabel("AB123", "confident")),
    ((("", 0.0), ("", 0.0), ("", 0.0)), 2, PseudoLabel("", "empty")),
])
def test_keep_rule(readings, min_agree, expected):
    label = choose_label(reads(*readings), min_agree=min_agree, min_score=0.95)
    assert label == expected
    assert label.kept == (expected.reason in ("agree", "confident"))


def test_labels_write_the_letter_o_as_the_digit_0_as_the_training_crops_do():
    assert pseudo_labels.label_text(" ab-1O 2") == "AB102"
    assert crop_sets.label_problem(pseudo_labels.label_text("OOO-111")) is None


@pytest.mark.parametrize("box, problem", [
    ((0.2, 0.1, 0.4, 0.6), None),
    ((-0.1, 0.8, 0.3, 1.3), None),  # partly outside: the part inside is cut
    ((1.1, 1.1, 1.3, 1.4), "outside_image"),
    ((0.2, -0.5, 0.4, -0.1), "outside_image"),
    ((0.5, 0.5, 0.5, 0.6), "degenerate"),  # no height
    ((0.4, 0.6, 0.2, 0.1), "degenerate"),  # corners swapped
    ((float("nan"), 0.1, 0.4, 0.6), "degenerate"),
    ((0.2, 0.999, 0.4, 1.2), "degenerate"),  # a tenth of a pixel wide once clipped
])
def test_boxes_that_cannot_be_cut(box, problem):
    assert pseudo_labels.box_problem(box, (50, 100, 3)) == problem


def test_unknown_engines_and_engines_that_cannot_start_fail_before_any_work():
    with pytest.raises(UnknownComponentError, match=r"Unknown ocr 'tesseract5'.*Did you mean "
                                                    r"'tesseract'.*Known: .*rapidocr"):
        pseudo_labels.build_engines(["tesseract5"])
    with pytest.raises(OcrSetupError, match="plate_ctc' needs a trained recognizer"):
        pseudo_labels.build_engines(["plate_ctc"])
    with pytest.raises(KdodError, match="Engines named twice: rapidocr"):
        pseudo_labels.build_engines(["rapidocr", "tesseract", "rapidocr"])


def test_a_missing_source_is_an_error_naming_it(tmp_path):
    with pytest.raises(tfod.TfodError, match="No TFRecord file matches .*nowhere.record"):
        pseudo_labels.pseudo_label(f"tfrecord:{tmp_path}/nowhere.record", "train", {},
                                   tmp_path / "out", min_agree=2, min_score=0.95)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- real engines on records

# (drawn text, style): flat plates that RapidOCR and Tesseract read (tests/test_ocr_engines.py);
# one has the letter O, which its label writes as 0.
PLATES = [("AB12 CDE", "white"), ("KLM4821", "yellow"), ("BO51 XYZ", "white")]
OUTSIDE_BOX, DEGENERATE_BOX = [1.1, 1.1, 1.3, 1.4], [0.5, 0.5, 0.5, 0.6]


def scene(plates: list[tuple[str, str]], size=(200, 320)) -> tuple[np.ndarray, list[list[float]]]:
    """A grey image with `plates` drawn one below the other, and their boxes (normalized)."""
    image = np.full((*size, 3), 90, np.uint8)
    boxes, top = [], 10
    for text, style in plates:
        plate = render_plate(text, style, "", "", height=36, border=0)
        height, width = plate.shape[:2]
        image[top:top + height, 20:20 + width] = plate
        boxes.append([top / size[0], 20 / size[1], (top + height) / size[0],
                      (20 + width) / size[1]])
        top += height + 30
    return image, boxes


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """TF OD API records (`tfod.write_tfod_records`, as kdod.to_tfrecord writes) of two scenes:
    one plate and two boxes that cannot be cut, then two plates; and the scenes' pixels."""
    first, first_boxes = scene(PLATES[:1])
    second, second_boxes = scene(PLATES[1:])
    examples = [{"image": first, "boxes": [*first_boxes, OUTSIDE_BOX, DEGENERATE_BOX],
                 "labels": [0, 0, 0], "filename": "scene0.png"},
                {"image": second, "boxes": second_boxes, "labels": [0, 0],
                 "filename": "scene1.png"}]
    path = tmp_path_factory.mktemp("records") / "train.record"
    tfod.write_tfod_records(examples, path)
    return path, examples


def _engines_or_skip(*names):
    if "rapidocr" in names and importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("rapidocr is not installed (pip install 'kdod[rapidocr]' or make install)")
    if importlib.util.find_spec("pytesseract") is None or shutil.which("tesseract") is None:
        pytest.skip("tesseract is not installed (pip install 'kdod[tesseract]' and apt-get "
                    "install tesseract-ocr)")
    return pseudo_labels.build_engines(names)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_real_engines_label_record_crops_that_train_ocr_reads(records, tmp_path):
    path, examples = records
    engines = _engines_or_skip("rapidocr", "tesseract")
    output = tmp_path / "pseudo"
    summary = pseudo_labels.pseudo_label(f"tfrecord:{path}", "train", engines, output,
                                         min_agree=2, min_score=0.95)

    assert summary["images"] == 2 and summary["plates"] == len(PLATES)
    assert summary["skipped_boxes"] == {"degenerate": 1, "outside_image": 1}
    kept, left_out = summary["kept"], summary["left_out"]
    assert sum(kept.values()) + sum(left_out.values()) == summary["plates"]
    assert summary["engines"] == ["rapidocr", "tesseract"]

    readings = _rows(output / "readings.csv")
    assert [row["filename"] for row in readings] == [f"crops/{i:05d}.png" for i in range(3)]
    assert [(row["image"], row["box"]) for row in readings] == [
        ("scene0.png", "0"), ("scene1.png", "0"), ("scene1.png", "1")]
    assert {"rapidocr_text", "rapidocr_score", "tesseract_text", "tesseract_score"} <= set(
        readings[0])
    for reason in ("agree", "confident", "disagree", "empty"):
        counted = kept.get(reason, left_out.get(reason))
        assert counted == sum(row["reason"] == reason for row in readings), reason
    # Crops are cut as kdod.recognize cuts a detection: the box and the OCR margin.
    expected = cropping.crop_box(examples[0]["image"], examples[0]["boxes"][0],
                                 cropping.CropPreparation.margin)
    np.testing.assert_array_equal(np.asarray(Image.open(output / "crops/00000.png")), expected)

    crops, texts = crop_sets.read_crop_csv(output / "labels.csv", bad_text="refuse")
    assert texts == [row["plate_text"] for row in readings if row["plate_text"]]
    assert len(texts) == sum(kept.values()) >= 2, readings
    truth = [pseudo_labels.label_text(text) for text, _ in PLATES]
    assert set(texts) <= set(truth), readings  # clean plates: what is kept is right
    assert all(crop.ndim == 3 and crop.shape[2] == 3 for crop in crops)


def test_cli_labels_a_source_with_one_engine(records, tmp_path):
    path, _ = records
    _engines_or_skip("tesseract")
    output = tmp_path / "pseudo"
    result = subprocess.run(
        [sys.executable, "-m", "kdod.pseudo_label_ocr", f"--source=tfrecord:{path}",
         "--engines=tesseract", "--min_agree=1", "--max_images=1", f"--output={output}"],
        check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "of 1 plates of 1 images labelled" in result.stdout
    assert "2 boxes skipped" in result.stdout
    assert "box 1 [1.1, 1.1, 1.3, 1.4] skipped: outside the image" in result.stderr
    assert {p.name for p in output.iterdir()} == {"crops", "labels.csv", "readings.csv",
                                                  "summary.json"}
    assert len(_rows(output / "readings.csv")) == 1

"""Plate-reading metrics in `python -m kdod.evaluate --ocr=...`: OCR alone on the true boxes and
end to end, with the text from the synthetic set's objects/text or from a user's CSV."""

import importlib.util
import json
import subprocess
import sys

import gin
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, TINY_GIN

from kdod import config, eval_lib, export_lib, train_lib
from kdod.data.pipeline import NoPlateTextError, load_examples
from kdod.errors import KdodError
from kdod.metrics.text import read_text_csv
from kdod.ocr import PlateRead, anpr, cropping, plate_text

TEXT_KEYS = ("ocr_exact_match", "ocr_cer", "end_to_end_exact_match", "end_to_end_cer")
# An undertrained detector scores low: keep its best few boxes whatever their score.
ANY_SCORE = ["postprocess.score_threshold = 0.0", "postprocess.max_detections = 3"]


@pytest.fixture(scope="module")
def examples(tiny_data_dir):
    """The tiny test split's original images, boxes and plate texts, as numpy."""
    return list(load_examples("synthetic_plates/tiny", "test", tiny_data_dir,
                              with_text=True).as_numpy_iterator())


class OracleOcr:
    """Reads a crop of a true box (cut as PlateRecognizer cuts it) as that plate's text."""

    def __init__(self, examples):
        margin = cropping.CropPreparation.margin
        self.texts = {cropping.crop_box(e["image"], box, margin).tobytes(): text.decode()
                      for e in examples for box, text in zip(e["boxes"], e["texts"])}
        self.crops_read = 0

    def read(self, crops):
        self.crops_read += len(crops)
        return [PlateRead(self.texts.get(crop.tobytes(), ""), 1.0) for crop in crops]


class TrueBoxes:
    """An 'exported model' (anything with detect_image) that finds the true boxes, shifted."""

    def __init__(self, examples, shift: float = 0.0):
        self.boxes = {e["image"].tobytes(): e["boxes"] for e in examples}
        self.shift = shift

    def detect_image(self, image):
        boxes = self.boxes[image.tobytes()].copy()
        boxes[:, [1, 3]] += self.shift * (boxes[:, 3] - boxes[:, 1])[:, None]
        return {"boxes": np.clip(boxes, 0, 1), "scores": np.ones(len(boxes), np.float32),
                "classes": np.zeros(len(boxes), np.int32)}


def _dataset(tiny_data_dir):
    return load_examples("synthetic_plates/tiny", "test", tiny_data_dir, with_text=True)


def test_perfect_reads_score_one_and_undetected_plates_zero(tiny_data_dir, examples):
    plates = sum(len(e["boxes"]) for e in examples)
    assert plates > len(examples) > 0
    perfect = anpr.PlateRecognizer(TrueBoxes(examples), OracleOcr(examples), min_score=0.5)
    metrics = eval_lib.evaluate_text(perfect, _dataset(tiny_data_dir))
    assert metrics == {"ocr_exact_match": 1.0, "ocr_cer": 0.0, "ocr_plates": plates,
                       "end_to_end_exact_match": 1.0, "end_to_end_cer": 0.0,
                       "end_to_end_plates": plates, "text_images": len(examples)}

    # Boxes shifted sideways by 60% of their width overlap the plates at IoU 0.25: not found,
    # so end to end nothing counts although the OCR alone still reads every true box.
    # Detections that match no plate are not read: they cannot change the metrics.
    ocr = OracleOcr(examples)
    missed = anpr.PlateRecognizer(TrueBoxes(examples, shift=0.6), ocr)
    metrics = eval_lib.evaluate_text(missed, _dataset(tiny_data_dir), max_images=3)
    assert metrics["ocr_exact_match"] == 1.0 and metrics["text_images"] == 3
    assert metrics["end_to_end_exact_match"] == 0.0 and metrics["end_to_end_cer"] == 1.0
    assert ocr.crops_read == metrics["ocr_plates"] == sum(len(e["boxes"]) for e in examples[:3])


def test_text_from_a_csv_of_some_images(tiny_data_dir, examples, tmp_path):
    named = [e for e in examples if len(e["boxes"])][:3]  # A CSV cannot name a plateless image.
    rows = [(e["filename"].decode(), text.decode()) for e in named for text in e["texts"]]
    rows[0] = (rows[0][0], rows[0][1][:-1] + ("X" if rows[0][1][-1] != "X" else "Y"))
    csv = tmp_path / "truth.csv"
    csv.write_text("filename,plate_text\n" + "".join(
        f"photos/{name},{text}\n" for name, text in rows))  # Base names match too.
    truth = read_text_csv(csv)
    recognizer = anpr.PlateRecognizer(TrueBoxes(examples), OracleOcr(examples))
    without_text = load_examples("synthetic_plates/tiny", "test", tiny_data_dir)
    metrics = eval_lib.evaluate_text(recognizer, without_text, truth)
    assert metrics["text_images"] == 3 and metrics["ocr_plates"] == len(rows)
    assert metrics["ocr_exact_match"] == pytest.approx((len(rows) - 1) / len(rows))
    characters = sum(len(plate_text.normalize_text(text)) for _, text in rows)
    assert metrics["ocr_cer"] == pytest.approx(1 / characters)

    csv.write_text("".join(f"{name},{text}\n" for name, text in [*rows, (rows[0][0], "X1")]))
    with pytest.raises(KdodError, match=f"rows for {rows[0][0]}, which has .* plate boxes"):
        eval_lib.evaluate_text(recognizer, without_text, read_text_csv(csv))
    csv.write_text("elsewhere.jpg,AB12CDE\n")
    with pytest.raises(KdodError, match="No image of the evaluation data is named in the "
                                        "plate-text CSV.*elsewhere.jpg"):
        eval_lib.evaluate_text(recognizer, without_text, read_text_csv(csv))
    with pytest.raises(KdodError, match="No plate-text CSV at"):
        read_text_csv(tmp_path / "missing.csv")


def test_sources_without_text_say_how_to_give_it(tmp_path):
    with pytest.raises(NoPlateTextError, match=r"has no plate text .*--text_csv="):
        load_examples(f"tfrecord:{tmp_path}/{{split}}.record", "test", with_text=True)


def _evaluate(*args):
    return subprocess.run([sys.executable, "-m", "kdod.evaluate", *args], capture_output=True,
                          text=True, timeout=600, check=False)


def test_cli_without_text_fails_at_once_with_how_to_give_it(tmp_path):
    (tmp_path / config.FULL_CONFIG).write_text((REPO / "gin" / "tiny.gin").read_text())
    no_text = "eval/input_pipeline.sources = [('tfrecord:/nowhere/{split}.record', 'test', 1.0)]"
    result = _evaluate(f"--model_dir={tmp_path}", "--ocr=rapidocr", f"--gin_param={no_text}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "has no plate text (objects/text)" in result.stderr and "--text_csv" in result.stderr
    assert "Traceback" not in result.stderr

    result = _evaluate(f"--model_dir={tmp_path}", "--text_csv=truth.csv")
    assert result.returncode == 2
    assert "--text_csv only apply with --ocr=<engine>" in result.stderr


@pytest.fixture(scope="module")
def tiny_run(tiny_data_dir, tmp_path_factory):
    """A tiny detector trained for a few steps, its config, and its SavedModel export."""
    folder = tmp_path_factory.mktemp("tiny_run")
    gin.clear_config()
    config.parse_gin([TINY_GIN], [f"input_pipeline.data_dir = '{tiny_data_dir}'",
                                  "train.steps = 10", "train.checkpoint_every = 10",
                                  "train.summary_images = 0"])
    train_lib.train(str(folder))
    gin.clear_config()
    return folder


def _needs_rapidocr():
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("rapidocr is not installed (pip install 'kdod[rapidocr]' or make install)")


def _assert_text_metrics(metrics, images):
    for key in TEXT_KEYS:
        assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
    assert metrics["text_images"] == images and metrics["ocr_plates"] >= images


def test_cli_reports_plate_text_metrics_of_a_trained_detector(tiny_run):
    _needs_rapidocr()
    result = _evaluate(f"--model_dir={tiny_run}", "--ocr=rapidocr", "--formats=synthetic",
                       "--max_text_images=3", "--min_score=0",
                       *[f"--gin_param={binding}" for binding in ANY_SCORE])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ocr_exact_match=" in result.stdout and "end_to_end_cer=" in result.stdout
    metrics = json.loads((tiny_run / "eval_eval" / "metrics.json").read_text())
    assert "AP50" in metrics
    _assert_text_metrics(metrics, images=3)
    events = list((tiny_run / "logs" / "eval_eval").glob("events.out.tfevents.*"))
    tags = {value.tag for path in events for event in tf.compat.v1.train.summary_iterator(
        str(path)) for value in event.summary.value}
    assert {"coco/AP50", "text/ocr_exact_match", "text/end_to_end_cer"} <= tags


def test_exported_model_reports_plate_text_metrics(tiny_run, clean_gin):
    _needs_rapidocr()
    config.parse_gin([str(tiny_run / config.FULL_CONFIG)], ANY_SCORE)
    saved_model = export_lib.export(eval_lib.load_trained(tiny_run), tiny_run / "export",
                                    "saved_model", model_dir=tiny_run)
    metrics = eval_lib.evaluate_exported(saved_model, text=eval_lib.TextEvaluation(
        "rapidocr", formats="synthetic", max_images=2, min_score=0.0))
    _assert_text_metrics(metrics, images=2)
    written = json.loads((tiny_run / "export" / "eval_eval" / "saved_model.json").read_text())
    assert written["end_to_end_cer"] == metrics["end_to_end_cer"]

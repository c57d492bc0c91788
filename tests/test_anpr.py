"""The plate-reading pipeline and `python -m kdod.recognize` with a tiny trained detector."""

import importlib.util
import json
import subprocess
import sys

import gin
import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from test_voc import png_header_only

from kdod import config, eval_lib, train_lib
from kdod.ocr import PlateRead, anpr
from tfds_builders.synthetic_plates import scene as synthetic_scene


@pytest.fixture(scope="module")
def model_dir(tiny_data_dir, tmp_path_factory):
    """A tiny detector trained for a few steps (seconds); tests lower its score threshold."""
    folder = tmp_path_factory.mktemp("tiny_detector")
    gin.clear_config()
    config.parse_gin([str(REPO / "gin" / "tiny.gin")], [
        f"input_pipeline.data_dir = '{tiny_data_dir}'", "train.steps = 60",
        "train.checkpoint_every = 60", "train.summary_images = 0"])
    train_lib.train(str(folder))
    gin.clear_config()
    return folder


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three rendered scenes (one of them wider than high) and a corrupt JPEG."""
    folder = tmp_path_factory.mktemp("images")
    sizes = [(128, 128), (128, 128), (96, 160)]
    for seed, (height, width) in enumerate(sizes):
        scene = synthetic_scene.render_scene(seed, synthetic_scene.SceneConfig(
            height=height, width=width, min_plates=1, max_plates=2))
        Image.fromarray(scene.image).save(folder / f"scene{seed}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return folder


# An undertrained detector scores low: keep its best few boxes whatever their score.
ANY_SCORE = ["postprocess.score_threshold = 0.0", "postprocess.max_detections = 3"]


class FixedText:
    """An OCR backend that reads every plate as the same text."""

    def read(self, crops):
        assert all(crop.dtype == np.uint8 and crop.ndim == 3 and crop.size for crop in crops)
        return [PlateRead("AB12CDE", 0.5) for _ in crops]


def test_recognizer_maps_boxes_to_each_original_image_and_reads_them(model_dir, clean_gin):
    config.parse_gin([str(model_dir / config.FULL_CONFIG)], ANY_SCORE)
    recognizer = anpr.PlateRecognizer(eval_lib.load_trained(model_dir), FixedText(),
                                      min_score=0.0)
    images = [np.zeros((90, 200, 3), np.uint8), np.full((128, 64, 3), 200, np.uint8)]
    results = recognizer(images)
    assert len(results) == 2
    assert [len(plates) for plates in results] == [3, 3]
    for plates in results:
        for plate in plates:
            ymin, xmin, ymax, xmax = plate.box
            assert 0 <= ymin <= ymax <= 1 and 0 <= xmin <= xmax <= 1
            assert plate.text == "AB12CDE" and plate.text_score == 0.5


def test_cli_on_a_folder_writes_json_lines_and_pictures_and_skips_a_corrupt_image(
        model_dir, image_folder, tmp_path):
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("rapidocr is not installed (pip install 'kdod[rapidocr]' or make install)")
    output = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "kdod.recognize", f"--model_dir={model_dir}", "--ocr=rapidocr",
         f"--gin_file={model_dir / config.FULL_CONFIG}",
         *[f"--gin_param={binding}" for binding in ANY_SCORE], "--formats=synthetic",
         "--min_score=0.0", f"--output_dir={output}", str(image_folder)],
        check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipped {image_folder / 'broken.jpg'}" in result.stderr
    assert "3 files" in result.stdout and "1 skipped" in result.stdout
    assert sorted(p.name for p in output.glob("*.png")) == [
        "scene0.png", "scene1.png", "scene2.png"]
    records = [json.loads(line) for line in (output / "plates.jsonl").read_text().splitlines()]
    assert len(records) == 3 * 3
    for record in records:
        assert set(record) == {"file", "frame", "box", "score", "text", "text_score"}
        assert record["file"].endswith(".png") and record["frame"] is None
        xmin, ymin, xmax, ymax = record["box"]
        assert 0 <= xmin <= xmax <= 160 and 0 <= ymin <= ymax <= 128
        assert record["text"] == record["text"].upper() and 0 <= record["text_score"] <= 1
    # The annotated picture differs from the input where boxes and text were drawn.
    drawn = {r["file"] for r in records}
    for name in drawn:
        before = np.asarray(Image.open(name))
        after = np.asarray(Image.open(output / (name.rsplit("/", 1)[-1])))
        assert before.shape == after.shape and (before != after).any()


def test_cli_names_a_missing_path_without_a_traceback(model_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kdod.recognize", f"--model_dir={model_dir}",
         str(tmp_path / "nowhere")], check=False, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 2
    assert "nowhere does not exist" in result.stderr and "Traceback" not in result.stderr


def _recognize(model_dir, output, *inputs):
    return subprocess.run(
        [sys.executable, "-m", "kdod.recognize", f"--model_dir={model_dir}", "--ocr=rapidocr",
         *[f"--gin_param={binding}" for binding in ANY_SCORE], "--min_score=0.0",
         f"--output_dir={output}", *map(str, inputs)],
        check=False, capture_output=True, text=True, timeout=600)


def test_cli_skips_a_decompression_bomb_and_fails_when_nothing_could_be_read(
        model_dir, image_folder, tmp_path):
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("rapidocr is not installed (pip install 'kdod[rapidocr]' or make install)")
    folder = tmp_path / "images"
    folder.mkdir()
    bomb = folder / "a_bomb.png"  # Read first: the files after it must still be read.
    bomb.write_bytes(png_header_only(60000, 60000))
    (folder / "b_scene.png").write_bytes((image_folder / "scene0.png").read_bytes())
    result = _recognize(model_dir, tmp_path / "out", folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"skipped {bomb}: DecompressionBombError" in result.stderr
    assert "from 1 files" in result.stdout and "1 skipped" in result.stdout
    assert (tmp_path / "out" / "b_scene.png").is_file()

    result = _recognize(model_dir, tmp_path / "out_bomb", bomb)
    assert result.returncode == 2
    assert "error: None of the 1 files could be read" in result.stderr
    assert "Traceback" not in result.stderr

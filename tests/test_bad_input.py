"""Every entry point fed its worst inputs: empty, truncated, damaged, huge-header, wrong-type and
wrong-range files and values. Each ends with exit status 2 and one `error:` line naming what is
wrong (no traceback), or skips and reports a bad input file; nothing already written is lost."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gin
import numpy as np
import pytest
from conftest import TINY_GIN, damage_middle
from test_voc import png_header_only

from kdod import checkpoints, config, eval_lib, train_lib
from kdod.data import tfod


def run_cli(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"kdod.{module}", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=600)


def assert_fails_with(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit status 2 and one `error:` line holding `message`: no traceback, no gin internals."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "In call to configurable" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def data_binding(data_dir) -> str:
    return f"input_pipeline.data_dir = '{data_dir}'"


@pytest.fixture(scope="module")
def trained_run(tiny_data_dir, tmp_path_factory) -> Path:
    """A tiny run trained for 10 steps: ckpt-5, ckpt-10 and the detector, with checksums."""
    folder = tmp_path_factory.mktemp("run")
    gin.clear_config()
    config.parse_gin([TINY_GIN], [data_binding(tiny_data_dir), "train.steps = 10",
                                  "train.checkpoint_every = 5", "train.summary_images = 0"])
    train_lib.train(str(folder))
    gin.clear_config()
    return folder


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


# ---------------------------------------------------------------- numbers in gin

DISTILL = ["train.distillation = @DistillerConfig()", "DistillerConfig.teacher_dir = 'teacher'"]
AUGMENT = ["input_pipeline.augmentation = @Augmentation()"]
BAD_SETTINGS = [
    (["input_pipeline.batch_size = 0"], "input_pipeline.batch_size must be a positive integer"),
    (["input_pipeline.batch_size = -4"],
     "input_pipeline.batch_size must be a positive integer, got -4"),
    (["input_pipeline.max_boxes = 0"], "input_pipeline.max_boxes must be a positive integer"),
    (["input_pipeline.shuffle_buffer = -1"], "input_pipeline.shuffle_buffer must be a positive"),
    (["input_pipeline.sources = []"], "input_pipeline.sources must be a non-empty list"),
    (["input_pipeline.sources = [('synthetic_plates/tiny', 'train')]"],
     "input_pipeline.sources must be a non-empty list of (name, split, weight) triples"),
    (["input_pipeline.sources = [('synthetic_plates/tiny', 'train', 0.0)]"],
     "input_pipeline.sources: the weight of 'synthetic_plates/tiny' must be a number > 0"),
    (["input_pipeline.sources = [('no_such_set', 'train', 1.0)]"], "Unknown data set"),
    (["input_pipeline.sources = [('synthetic_plates/tiny', 'trian', 1.0)]"],
     "Cannot read 'synthetic_plates/tiny' split 'trian': Unknown split 'trian'"),
    (["train.steps = 0"], "train.steps must be a positive integer, got 0"),
    (["train.steps = -5"], "train.steps must be a positive integer, got -5"),
    (["train.steps = 2.5"], "train.steps must be a positive integer, got 2.5"),
    (["train.checkpoint_every = 0"], "train.checkpoint_every must be a positive integer"),
    (["train.keep_checkpoints = 0"], "train.keep_checkpoints must be a positive integer"),
    (["train.log_every = -1"], "train.log_every must be a positive integer"),
    (["train.summary_images = -1"], "train.summary_images must be an integer >= 0"),
    (["make_optimizer.learning_rate = 0.0"], "make_optimizer.learning_rate must be a number > 0"),
    (["make_optimizer.learning_rate = 1e999"],
     "make_optimizer.learning_rate must be a number > 0, got inf"),
    (["make_optimizer.learning_rate = '0.01'"], "make_optimizer.learning_rate must be a number"),
    (["make_optimizer.warmup_steps = -1"], "make_optimizer.warmup_steps must be an integer >= 0"),
    (["make_optimizer.name = 'sgd'", "make_optimizer.momentum = 1.0"],
     "make_optimizer.momentum must be a number >= 0 and < 1"),
    (["make_optimizer.weight_decay = -0.1"], "make_optimizer.weight_decay must be a number >= 0"),
    (["make_optimizer.clipnorm = 0.0"], "make_optimizer.clipnorm must be a number > 0"),
    (["make_optimizer.name = 'rmsprop'"], "make_optimizer.name must be one of sgd, adam, adamw"),
    (["DetectorConfig.image_size = 0"], "DetectorConfig.image_size must be a positive integer"),
    (["DetectorConfig.image_size = 100"], "multiple of 32 (DetectorConfig.image_size)"),
    (["DetectorConfig.num_classes = 0"], "DetectorConfig.num_classes must be a positive integer"),
    (["DetectorConfig.head_convs = -1"], "DetectorConfig.head_convs must be an integer >= 0"),
    (["DetectorConfig.batch_norm_momentum = 1.5"], "DetectorConfig.batch_norm_momentum must be"),
    (["AnchorConfig.min_level = 0"], "AnchorConfig.min_level must be a positive integer"),
    (["AnchorConfig.max_level = 2"], "AnchorConfig needs min_level <= max_level"),
    (["AnchorConfig.min_level = 2"], "the neck needs stride 4 for AnchorConfig.min_level=2"),
    (["AnchorConfig.anchor_scale = -1.0"], "AnchorConfig.anchor_scale must be a number > 0"),
    (["AnchorConfig.scales_per_octave = 0"], "AnchorConfig.scales_per_octave must be a positive"),
    (["AnchorConfig.aspect_ratios = 2.0"], "AnchorConfig.aspect_ratios must be a non-empty list"),
    (["tiny_cnn.width = 0"], "tiny_cnn.width must be a positive integer"),
    (["fpn_lite.filters = -8"], "fpn_lite.filters must be a positive integer"),
    ([*AUGMENT, "Augmentation.hue = 0.7"], "Augmentation.hue must be a number >= 0 and <= 0.5"),
    ([*AUGMENT, "Augmentation.flip_prob = 1.5"], "Augmentation.flip_prob must be a number >= 0"),
    ([*AUGMENT, "Augmentation.min_scale = 0.0"], "Augmentation.min_scale must be a number > 0"),
    ([*DISTILL, "DistillerConfig.losses = {'kl_logits': -1.0}"],
     "DistillerConfig.losses['kl_logits'] must be a number >= 0, got -1.0"),
    ([*DISTILL, "DistillerConfig.losses = {}"], "DistillerConfig.losses must map loss names"),
]


@pytest.mark.parametrize("bindings,message", BAD_SETTINGS,
                         ids=[" ".join(b[-1:]) for b, _ in BAD_SETTINGS])
def test_a_bad_training_setting_is_an_error_naming_it_before_anything_is_written(
        bindings, message, tiny_data_dir, tmp_path, clean_gin):
    config.parse_gin([TINY_GIN], [data_binding(tiny_data_dir), *bindings])
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        train_lib.train(str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_a_bad_evaluation_setting_is_an_error_naming_it(run_copy, clean_gin):
    config.parse_gin([str(run_copy / config.FULL_CONFIG)], ["evaluate.batch_size = 0"])
    before = contents(run_copy)
    with pytest.raises(config.ConfigError, match="evaluate.batch_size must be a positive integer"):
        eval_lib.evaluate(str(run_copy))
    assert contents(run_copy) == before


def test_a_gin_configurable_missing_an_argument_is_a_one_line_error(tmp_path, clean_gin):
    config.parse_gin([TINY_GIN], ["train.distillation = @DistillerConfig()"])
    with pytest.raises(TypeError) as error:
        train_lib.train(str(tmp_path / "run"))
    assert config.user_message(error.value) == (
        "gin: DistillerConfig needs losses, teacher_dir; bind them, e.g. "
        "DistillerConfig.losses = ...")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- files given to kdod

def test_empty_and_unreadable_record_files_fail_naming_them(tmp_path):
    empty = tmp_path / "empty.record"
    empty.write_bytes(b"")
    with pytest.raises(tfod.TfodError, match=f"{empty} holds no records"):
        tfod.load_tfod_records(str(empty))
    text = tmp_path / "notes.record"
    text.write_text("not records at all, but long enough to hold a record header" * 3)
    with pytest.raises(tfod.DamagedRecordsError, match=f"{text} is not a TFRecord file"):
        tfod.load_tfod_records(str(text))


def test_cli_train_refuses_settings_and_files_in_the_way(tiny_data_dir, tmp_path):
    result = run_cli("train", f"--gin_file={TINY_GIN}", f"--model_dir={tmp_path / 'run'}",
                     f"--gin_param={data_binding(tiny_data_dir)}",
                     "--gin_param=input_pipeline.batch_size = -4")
    assert_fails_with(result, "input_pipeline.batch_size must be a positive integer, got -4.")
    assert not (tmp_path / "run").exists()

    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert_fails_with(run_cli("train", f"--gin_file={TINY_GIN}", f"--model_dir={a_file}"),
                      f"--model_dir: {a_file} is a file, not a folder.")
    assert a_file.read_text() == "mine"

    garbage = tmp_path / "garbage.gin"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 300, np.uint8).tobytes())
    assert_fails_with(run_cli("train", f"--gin_file={garbage}", f"--model_dir={tmp_path / 'g'}"),
                      "gin:")


def test_cli_train_on_truncated_records_names_the_file_and_the_count(tmp_path):
    path = tmp_path / "train.record"
    examples = [{"image": np.full([8, 8, 3], i, np.uint8), "boxes": [[0.1, 0.1, 0.5, 0.5]],
                 "labels": [0], "filename": f"{i}.png"} for i in range(2)]
    tfod.write_tfod_records(examples, path)
    path.write_bytes(path.read_bytes()[:-10])  # Cuts into the last record.
    result = run_cli("train", f"--gin_file={TINY_GIN}", f"--model_dir={tmp_path / 'run'}",
                     f"--gin_param=input_pipeline.sources = [('tfrecord:{path}', 'train', 1.0)]")
    assert_fails_with(result, f"{path} is damaged after 1 records")
    assert not (tmp_path / "run").exists()


def test_cli_train_on_a_damaged_checkpoint_names_it_and_changes_nothing(run_copy):
    damage_middle(run_copy / checkpoints.CHECKPOINT_DIR / "ckpt-10.weights.h5")
    before = contents(run_copy)
    result = run_cli("train", f"--gin_file={run_copy / config.FULL_CONFIG}",
                     f"--model_dir={run_copy}", "--gin_param=train.steps = 15")
    assert_fails_with(result, "ckpt-10.weights.h5 does not match its checksum")
    assert "The previous good checkpoint is ckpt-5.weights.h5" in result.stderr
    assert contents(run_copy) == before


def test_cli_evaluate_and_export_refuse_what_is_no_run(run_copy, tmp_path):
    missing, empty, a_file = tmp_path / "missing", tmp_path / "empty", tmp_path / "notes.txt"
    empty.mkdir()
    a_file.write_text("mine")
    for entry_point in ("evaluate", "export"):
        assert_fails_with(run_cli(entry_point, f"--model_dir={missing}"),
                          f"--model_dir={missing} does not exist")
        assert_fails_with(run_cli(entry_point, f"--model_dir={empty}"),
                          f"--model_dir={empty} is not a training run (it has no config.gin)")
        assert_fails_with(run_cli(entry_point, f"--model_dir={a_file}"),
                          f"--model_dir={a_file} is not a folder")
    assert_fails_with(run_cli("export", f"--model_dir={run_copy}", f"--output_dir={a_file}"),
                      f"--output_dir: {a_file} is a file, not a folder.")
    assert_fails_with(run_cli("evaluate", f"--exported={missing}"), "does not exist")
    assert a_file.read_text() == "mine" and not missing.exists()


def test_cli_evaluate_on_a_damaged_detector_names_it_and_changes_nothing(run_copy):
    damage_middle(run_copy / checkpoints.DETECTOR_WEIGHTS)
    before = contents(run_copy)
    assert_fails_with(run_cli("evaluate", f"--model_dir={run_copy}"),
                      f"{run_copy / checkpoints.DETECTOR_WEIGHTS} does not match its checksum")
    assert contents(run_copy) == before


def test_cli_recognize_reports_every_bad_file_and_fails_when_none_could_be_read(
        run_copy, tmp_path):
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        pytest.skip("rapidocr is not installed (pip install 'kdod[rapidocr]' or make install)")
    images = tmp_path / "images"
    images.mkdir()
    assert_fails_with(run_cli("recognize", f"--model_dir={run_copy}", images),
                      f"No image or video files in {images}")
    (images / "empty.png").write_bytes(b"")
    (images / "text.jpg").write_text("not a picture")
    (images / "bomb.png").write_bytes(png_header_only(60000, 60000))
    (images / "header_only.png").write_bytes(png_header_only(64, 64))
    (images / "noise.mp4").write_bytes(bytes(1000))
    result = run_cli("recognize", f"--model_dir={run_copy}", "--ocr=rapidocr",
                     f"--output_dir={tmp_path / 'out'}", images)
    assert_fails_with(result, "None of the 5 files could be read")
    for name in ("empty.png", "text.jpg", "bomb.png", "header_only.png", "noise.mp4"):
        assert f"skipped {images / name}: " in result.stderr
    assert "0 plates from 0 files" in result.stdout and "5 skipped" in result.stdout
    result = run_cli("recognize", f"--model_dir={run_copy}", "--video_stride=0", images)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--video_stride" in result.stderr


def test_cli_to_tfrecord_refuses_bad_input_and_keeps_the_output_there(tiny_data_dir, tmp_path):
    data_dir = Path(shutil.copytree(tiny_data_dir, tmp_path / "data"))
    output = tmp_path / "train.record"
    output.write_bytes(b"records of an earlier conversion")
    (shard,) = data_dir.glob("synthetic_plates/tiny/*/synthetic_plates-train.tfrecord-*")
    damage_middle(shard)
    arguments = ["--dataset=synthetic_plates/tiny", f"--data_dir={data_dir}"]
    result = run_cli("to_tfrecord", *arguments, f"--output={output}")
    assert_fails_with(result, f"{shard} is damaged after")
    assert output.read_bytes() == b"records of an earlier conversion"
    assert_fails_with(run_cli("to_tfrecord", *arguments, f"--output={tmp_path}"),
                      f"--output={tmp_path} is a folder")
    assert_fails_with(run_cli("to_tfrecord", *arguments, f"--output={output}/x.record"),
                      f"--output: {output} is a file, not a folder.")
    assert output.read_bytes() == b"records of an earlier conversion"

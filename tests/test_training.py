"""Training for real on tiny synthetic data: it learns, resumes after a kill, stops on NaN."""

import os
import shutil
import signal
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf
from conftest import OVERFIT_TINY, damage_middle
from conftest import TINY_GIN as TINY

from kdod import checkpoints, config, eval_lib, train_lib
from kdod.detection.detector import Detector, DetectorConfig
from kdod.errors import KdodError


def _bindings(data_dir, *extra):
    return [f"input_pipeline.data_dir = '{data_dir}'", *extra]


def test_tiny_detector_overfits_a_handful_of_images(tiny_data_dir, tmp_path, clean_gin):
    config.parse_gin([TINY], _bindings(tiny_data_dir, *OVERFIT_TINY, "train.steps = 400",
                                       "train.checkpoint_every = 100"))
    model = train_lib.train(str(tmp_path))
    losses = model.history.history["total"]
    assert losses[-1] < 0.3 * losses[0], losses
    metrics = eval_lib.evaluate(str(tmp_path))
    # Three of the 12 plates are 3-5 px high, at the edge of what stride-8 anchors can find:
    # 0.88 on one CPU, above 0.9 on another (float kernels differ); untrained, AP50 is ~0.
    assert metrics["AP50"] >= 0.85, metrics


def _train_command(model_dir, data_dir, *extra):
    params = _bindings(data_dir, "train.steps = 400", "train.checkpoint_every = 20", *extra)
    return [sys.executable, "-m", "kdod.train", f"--gin_file={TINY}", f"--model_dir={model_dir}",
            *[f"--gin_param={p}" for p in params]]


def test_run_killed_mid_training_resumes_from_its_last_checkpoint(tiny_data_dir, tmp_path):
    command = _train_command(tmp_path, tiny_data_dir)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.time() + 240
    none_or_first = ([], ["ckpt-20.weights.h5"])
    while [p.name for p in checkpoints.checkpoint_paths(tmp_path)][-1:] in none_or_first:
        assert process.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline, "no second checkpoint within 4 minutes"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = int(checkpoints.checkpoint_paths(tmp_path)[-1].name.split("-")[1].split(".")[0])
    assert 40 <= killed_at < 400

    resumed = subprocess.run(command, check=False, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resuming from step {killed_at}" in resumed.stderr
    assert f"Epoch {killed_at // 20 + 1}/20" in resumed.stdout  # Starts where it stopped.
    assert f"Epoch {killed_at // 20}/20" not in resumed.stdout
    assert checkpoints.checkpoint_paths(tmp_path)[-1].name == "ckpt-400.weights.h5"


def test_corrupt_checkpoint_gives_a_clear_error(tiny_data_dir, tmp_path):
    folder = tmp_path / checkpoints.CHECKPOINT_DIR
    folder.mkdir()
    (folder / "ckpt-20.weights.h5").write_bytes(b"not an HDF5 file")
    result = subprocess.run(_train_command(tmp_path, tiny_data_dir), check=False,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Cannot restore checkpoint" in result.stderr and "ckpt-20.weights.h5" in result.stderr
    assert "Traceback" not in result.stderr


class NaNAfterStep25Detector(Detector):
    """A detector whose loss turns NaN at step 25, as a diverging run's would."""

    def loss_terms(self, batch, outputs):
        terms = super().loss_terms(batch, outputs)
        poison = tf.where(self.optimizer.iterations >= 25, float("nan"), 0.0)
        return {**terms, "total": terms["total"] + poison}


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(
        tiny_data_dir, tmp_path, clean_gin):
    config.parse_gin([TINY], _bindings(tiny_data_dir, "train.summary_images = 0"))
    with pytest.raises(train_lib.NonFiniteLossError, match=r"at step 26.*ckpt-20\.weights\.h5"):
        train_lib.train(str(tmp_path), model_fn=NaNAfterStep25Detector)
    assert [p.name for p in checkpoints.checkpoint_paths(tmp_path)] == ["ckpt-20.weights.h5"]


def test_warm_start_copies_a_runs_detector_at_another_input_size(
        tiny_data_dir, tmp_path, clean_gin):
    config.parse_gin([TINY], _bindings(tiny_data_dir, "train.steps = 10",
                                       "train.summary_images = 0"))
    source = train_lib.train(str(tmp_path)).exported_detector()
    gin.bind_parameter("DetectorConfig.image_size", 96)  # Convolutional: any size starts.
    target = Detector(DetectorConfig())
    assert not np.allclose(target.network.weights[0], source.network.weights[0])
    train_lib.warm_start(target, tmp_path)
    for ours, theirs in zip(target.network.weights, source.network.weights, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_warm_start_from_another_architecture_names_what_differs(
        tiny_data_dir, tmp_path, clean_gin):
    config.parse_gin([TINY], _bindings(tiny_data_dir, "train.steps = 2",
                                       "train.summary_images = 0"))
    train_lib.train(str(tmp_path / "source"))
    gin.bind_parameter("tiny_cnn.width", 12)
    with pytest.raises(train_lib.WarmStartError, match=r"tiny_cnn\.width: 12 vs 8"):
        train_lib.train(str(tmp_path / "target"), init_from=str(tmp_path / "source"))
    with pytest.raises(KdodError, match="No trained initial detector in"):
        train_lib.warm_start(Detector(DetectorConfig()), tmp_path / "missing")


def _last_step(model_dir):
    return int(checkpoints.checkpoint_paths(model_dir)[-1].name.split("-")[1].split(".")[0])


def test_resume_with_another_checkpoint_every_stops_at_train_steps_and_adds_up_time(
        tiny_data_dir, tmp_path, clean_gin):
    config.parse_gin([TINY], _bindings(tiny_data_dir, "train.summary_images = 0",
                                       "train.steps = 30", "train.checkpoint_every = 10"))
    train_lib.train(str(tmp_path))
    assert 0 < checkpoints.training_seconds(tmp_path, 10) < checkpoints.training_seconds(tmp_path)
    # As if the first sitting had taken 1000 s: the resumed run's time goes on from there.
    checkpoints.record_training_seconds(tmp_path, 30, 1000.0)
    gin.bind_parameter("train.steps", 40)
    gin.bind_parameter("train.checkpoint_every", 20)  # 30 is no multiple of it.
    started = time.perf_counter()
    model = train_lib.train(str(tmp_path))
    assert int(model.optimizer.iterations.numpy()) == 40
    assert _last_step(tmp_path) == 40
    assert 1000 < checkpoints.training_seconds(tmp_path) < 1000 + time.perf_counter() - started
    assert checkpoints.training_seconds(tmp_path, 30) == 1000.0


def test_a_resumed_run_trains_on_from_the_batch_it_stopped_at(tiny_data_dir, tmp_path, clean_gin):
    config.parse_gin([TINY], _bindings(tiny_data_dir, "train.summary_images = 0",
                                       "train.steps = 20", "train.checkpoint_every = 10"))
    straight = train_lib.train(str(tmp_path / "straight")).get_weights()
    # As if killed after its checkpoint at step 10: the same run, resumed from there.
    shutil.copytree(tmp_path / "straight", tmp_path / "resumed")
    for path in (tmp_path / "resumed" / checkpoints.CHECKPOINT_DIR).glob("ckpt-20.*"):
        path.unlink()
    resumed = train_lib.train(str(tmp_path / "resumed")).get_weights()
    # Reading the first ten batches again instead would end elsewhere.
    for got, expected in zip(resumed, straight, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_damaged_checkpoints_and_detector_fail_naming_the_file_and_what_to_use(
        tiny_data_dir, tmp_path, clean_gin, caplog):
    config.parse_gin([TINY], _bindings(tiny_data_dir, "train.summary_images = 0",
                                       "train.steps = 20", "train.checkpoint_every = 10"))
    train_lib.train(str(tmp_path))
    folder = tmp_path / checkpoints.CHECKPOINT_DIR
    assert sorted(p.name for p in folder.iterdir()) == [
        "ckpt-10.weights.h5", "ckpt-10.weights.h5.sha256",
        "ckpt-20.weights.h5", "ckpt-20.weights.h5.sha256"]
    assert (tmp_path / "detector.weights.h5.sha256").is_file()
    latest = folder / "ckpt-20.weights.h5"
    damage_middle(latest)
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"ckpt-20\.weights\.h5 does not match its checksum.*"
                             r"previous good checkpoint is ckpt-10\.weights\.h5"):
        train_lib.train(str(tmp_path))
    damage_middle(tmp_path / "detector.weights.h5")
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"detector\.weights\.h5 does not match its checksum"):
        eval_lib.load_trained(tmp_path)

    # Deleting the damaged checkpoint recovers: training resumes from ckpt-10.
    latest.unlink()
    checkpoints.checksum_path(latest).unlink()
    (tmp_path / "detector.weights.h5").unlink()
    (folder / "partial-ckpt-30.weights.h5").write_bytes(b"half a file")  # A kill mid-save.
    train_lib.train(str(tmp_path))
    assert _last_step(tmp_path) == 20
    assert not list(folder.glob("partial-*"))
    eval_lib.load_trained(tmp_path)
    damage_middle(tmp_path / "detector.weights.h5")  # A finished run writes it again.
    train_lib.train(str(tmp_path))
    eval_lib.load_trained(tmp_path)

    # Files written before checksums (older kdod) load, with a warning.
    for checksum in tmp_path.rglob("*.sha256"):
        checksum.unlink()
    with caplog.at_level("WARNING"):
        eval_lib.load_trained(tmp_path)
    assert "has no checksum file" in caplog.text


def test_steps_of_zero_is_an_error_and_creates_nothing(tmp_path):
    result = subprocess.run(_train_command(tmp_path / "run", tmp_path, "train.steps = 0"),
                            check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "error: train.steps must be a positive integer, got 0." in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()

"""tf.distribute for real: MirroredStrategy on 2 logical CPUs matches one device, two workers on
127.0.0.1 train a tiny distillation to identical weights, and killed workers resume.

Every strategy runs in its own process: logical devices and multi-worker collectives must be
set up before TensorFlow initializes.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
from conftest import OVERFIT_TINY, REPO, TINY_GIN

from kdod import checkpoints, config, train_lib

TEACHER_LOSSES = "DistillerConfig.losses = {'kl_logits': 1.0, 'feature_imitation': 1.0}"

# One SGD step of a Distiller (teacher, kl_logits, feature_imitation with adapters) on a global
# batch of 4 = two alike halves, on one device and on MirroredStrategy over 2 logical CPUs;
# then `train` itself under MirroredStrategy, and a global batch that does not split; then the
# trained run's detections and COCO evaluation on one device and split over the 2 replicas.
MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import gin
import keras
import numpy as np
from kdod import config, distribute, train_lib
from kdod.data.pipeline import input_pipeline
from kdod.distill.distiller import DistillerConfig, build_distiller

tiny, model_dir, *bindings = sys.argv[1:]
config.parse_gin([tiny], bindings)
half = next(iter(input_pipeline(training=False, image_size=128, batch_size=2)))
batch = {k: tf.concat([v, v], 0) for k, v in half.items() if v.dtype != tf.string}

def one_step(strategy):
    keras.utils.set_random_seed(0)
    with distribute.scope(strategy):
        model = build_distiller(DistillerConfig())
        model.compile(optimizer=train_lib.make_optimizer(total_steps=10))
        model(batch["image"][:1])
    before = [np.array(w) for w in model.student.network.weights]
    history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history
    after = [np.array(w) for w in model.student.network.weights]
    return {k: v[0] for k, v in history.items()}, before, after

mirrored = distribute.make_strategy("mirrored")
one, before, after_one = one_step(None)
two, _, after_two = one_step(mirrored)
train_lib.train(model_dir, strategy=mirrored)

from kdod import eval_lib
images = batch["image"].numpy()[:3]  # Padded to 4 for the 2 replicas, then cut back to 3.
on_one = eval_lib.batch_detector(eval_lib.load_trained(model_dir))(images)
with distribute.scope(mirrored):
    replicated = eval_lib.load_trained(model_dir)
on_two = eval_lib.batch_detector(replicated, mirrored)(images)
gin.bind_parameter("evaluate.batch_size", 3)
coco = {"one": eval_lib.evaluate(model_dir), "two": eval_lib.evaluate(model_dir, strategy=mirrored)}
try:
    gin.bind_parameter("input_pipeline.batch_size", 3)
    train_lib.train(model_dir + "_odd", strategy=mirrored)
    odd = "no error"
except config.ConfigError as error:
    odd = config.user_message(error)
print(json.dumps({
    "replicas": mirrored.num_replicas_in_sync, "one_device": one, "mirrored": two,
    "moved": max(float(np.max(np.abs(a - b))) for a, b in zip(after_one, before)),
    "difference": max(float(np.max(np.abs(a - b))) for a, b in zip(after_one, after_two)),
    "odd_batch": odd, "detected_rows": len(on_two["raw_scores"]),
    "detect_difference": float(np.max(np.abs(on_one["raw_scores"] - on_two["raw_scores"]))),
    "coco": coco}))
"""

# A worker of a MultiWorkerMirroredStrategy cluster (TF_CONFIG): trains, then saves the weights
# it holds (only the chief writes the run's files) so the test can compare the workers'.
WORKER = """
import sys
import numpy as np
from absl import logging
from kdod import config, distribute
strategy = distribute.make_strategy("multi_worker")  # First: before TensorFlow runs anything.
logging.set_verbosity(logging.INFO)
tiny, model_dir, weights, *bindings = sys.argv[1:]
config.parse_gin([tiny], bindings)
from kdod import train_lib
model = train_lib.train(model_dir, strategy=strategy)
np.savez(weights, *[np.asarray(w) for w in model.exported_detector().network.weights])
"""

# A worker of a study (kdod.benchmarks.study) across machines: a teacher, then a student
# distilled from a cache of it; prints the metrics it measured.
STUDY_WORKER = """
import json, sys
from pathlib import Path
from kdod import distribute
strategy = distribute.make_strategy("multi_worker")
from kdod.benchmarks.study import Ledger, Run, measure_all
results, runs, *bindings = sys.argv[1:]
teacher = Run("teacher", ("tiny.gin",), Path(runs) / "teacher", tuple(bindings))
cached = Run("kl cached", ("tiny.gin", "losses/kl.gin"), Path(runs) / "kl_cached",
             tuple(bindings), teacher=teacher, teacher_cache=Path(runs) / "kl_cache")
ledger = Ledger(Path(results), ("AP", "train_minutes", "teacher_cache_minutes"))
print(json.dumps(measure_all([teacher, cached], ledger, strategy=strategy)))
"""


@pytest.fixture(scope="module")
def tiny_teacher(tiny_data_dir, tmp_path_factory) -> str:
    """A (barely) trained tiny teacher with wider neck features than the student's: the
    feature_imitation loss needs adapters."""
    model_dir = tmp_path_factory.mktemp("teacher")
    gin.clear_config()
    config.parse_gin([TINY_GIN], [f"input_pipeline.data_dir = '{tiny_data_dir}'",
                                  "train.steps = 2", "train.summary_images = 0",
                                  "fpn_lite.filters = 48"])
    train_lib.train(str(model_dir))
    gin.clear_config()
    return str(model_dir)


@pytest.fixture(scope="module")
def plate_finder(tiny_data_dir, tmp_path_factory) -> str:
    """A tiny detector overfit on 8 images it is then evaluated on (~20 s): it finds plates."""
    model_dir = tmp_path_factory.mktemp("plate_finder")
    gin.clear_config()
    config.parse_gin([TINY_GIN], [f"input_pipeline.data_dir = '{tiny_data_dir}'", *OVERFIT_TINY,
                                  "train.steps = 200", "train.checkpoint_every = 200"])
    train_lib.train(str(model_dir))
    gin.clear_config()
    return str(model_dir)


def _distillation(data_dir: str, teacher_dir: str, *extra: str) -> list[str]:
    return [f"input_pipeline.data_dir = '{data_dir}'", "train.summary_images = 0",
            "train.distillation = @DistillerConfig()",
            f"DistillerConfig.teacher_dir = '{teacher_dir}'", TEACHER_LOSSES, *extra]


def test_mirrored_on_two_devices_gives_one_devices_loss_and_step(tiny_data_dir, tiny_teacher,
                                                                   tmp_path):
    bindings = _distillation(tiny_data_dir, tiny_teacher, "make_optimizer.name = 'sgd'",
                             "make_optimizer.clipnorm = None", "make_optimizer.warmup_steps = 0",
                             "input_pipeline.batch_size = 4", "train.steps = 2",
                             "train.checkpoint_every = 2")
    result = subprocess.run([sys.executable, "-c", MIRRORED, TINY_GIN, str(tmp_path / "run"),
                             *bindings], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["replicas"] == 2
    for name, value in measured["one_device"].items():
        assert measured["mirrored"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
    # The same update: a gradient summed, not averaged, over the replicas would move twice as far.
    assert measured["moved"] > 1e-4
    assert measured["difference"] < 1e-3 * measured["moved"]
    assert [p.name for p in checkpoints.checkpoint_paths(tmp_path / "run")] == [
        "ckpt-2.weights.h5"]
    assert measured["odd_batch"] == ("input_pipeline.batch_size = 3 is the global batch; it "
                                     "must be a multiple of the 2 replicas of the strategy.")
    assert measured["detected_rows"] == 3 and measured["detect_difference"] < 1e-5
    assert measured["coco"]["two"] == pytest.approx(measured["coco"]["one"], abs=1e-6)


def test_benchmarks_of_one_machine_refuse_several_saying_what_to_use():
    result = subprocess.run([sys.executable, "-m", "kdod.benchmark", "real", "data",
                             "--strategy=multi_worker"], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert ("data measure(s) one machine: run it with --strategy=mirrored or tpu. Across "
            "machines (multi_worker) run the studies: real, losses, scale.") in result.stderr, (
        result.stderr)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _worker_env(ports: list[int], index: int) -> dict[str, str]:
    cluster = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
               "task": {"type": "worker", "index": index}}
    return {**os.environ, "TF_CONFIG": json.dumps(cluster)}


def _start_workers(command_of, ports: list[int], tmp_path, name: str) -> list[subprocess.Popen]:
    """One process per worker; stderr to tmp_path/<name><index>.log, stdout to .out."""
    return [subprocess.Popen(command_of(index), cwd=REPO, env=_worker_env(ports, index),
                             stdout=open(tmp_path / f"{name}{index}.out", "w"),
                             stderr=open(tmp_path / f"{name}{index}.log", "w"),
                             start_new_session=True)
            for index in range(len(ports))]


def _finish(workers: list[subprocess.Popen], tmp_path, name: str) -> list[str]:
    logs = []
    for index, worker in enumerate(workers):
        worker.wait(timeout=400)
        logs.append((tmp_path / f"{name}{index}.log").read_text())
        assert worker.returncode == 0, logs[-1][-3000:]
    return logs


def _driver(model_dir, tmp_path, bindings):
    def command(index: int) -> list[str]:
        return [sys.executable, "-c", WORKER, TINY_GIN, str(model_dir),
                str(tmp_path / f"weights{index}.npz"), *bindings]
    return command


def _same_weights(tmp_path, count: int = 2) -> None:
    first = np.load(tmp_path / "weights0.npz")
    for index in range(1, count):
        other = np.load(tmp_path / f"weights{index}.npz")
        assert first.files == other.files
        for key in first.files:  # Moving BatchNorm statistics included.
            np.testing.assert_array_equal(first[key], other[key], err_msg=key)


def test_two_workers_train_a_distillation_to_identical_weights(tiny_data_dir, tiny_teacher,
                                                               tmp_path):
    model_dir = tmp_path / "run"
    bindings = _distillation(tiny_data_dir, tiny_teacher, "input_pipeline.batch_size = 4",
                             "train.steps = 4", "train.checkpoint_every = 2")
    workers = _start_workers(_driver(model_dir, tmp_path, bindings), _free_ports(2), tmp_path,
                             "worker")
    _finish(workers, tmp_path, "worker")
    _same_weights(tmp_path)
    # Only the chief wrote files, once each.
    assert [p.name for p in checkpoints.checkpoint_paths(model_dir)] == [
        "ckpt-2.weights.h5", "ckpt-4.weights.h5"]
    assert (model_dir / checkpoints.DETECTOR_WEIGHTS).is_file()


def _printed_metrics(text: str) -> dict[str, float]:
    """The `name=value ...` line kdod.evaluate prints last."""
    return {key: float(value) for key, value in
            (pair.split("=") for pair in text.strip().splitlines()[-1].split())}


def test_two_workers_evaluate_as_one_device_does_and_only_the_chief_writes(plate_finder,
                                                                          tmp_path):
    command = [sys.executable, "-m", "kdod.evaluate", f"--model_dir={plate_finder}"]
    single = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert single.returncode == 0, single.stderr[-3000:]
    # The workers' batches of 3 split unevenly over their 2 replicas: padding is exercised too.
    on_workers = [*command, "--strategy=multi_worker", "--gin_param=evaluate.batch_size = 3"]
    workers = _start_workers(lambda index: on_workers, _free_ports(2), tmp_path, "eval")
    logs = _finish(workers, tmp_path, "eval")
    one_device = _printed_metrics(single.stdout)
    assert one_device["AP50"] > 0.5  # Plates found: comparing empty results would prove little.
    for index in range(2):
        on_two = _printed_metrics((tmp_path / f"eval{index}.out").read_text())
        assert on_two == pytest.approx(one_device, abs=1e-4), index
    assert ["Metrics written to" in log for log in logs] == [True, False]


def _latest_step(model_dir) -> int:
    paths = checkpoints.checkpoint_paths(model_dir)
    return int(paths[-1].name.split("-")[1].split(".")[0]) if paths else 0


def test_a_killed_worker_restarted_with_the_cluster_resumes(tiny_data_dir, tiny_teacher,
                                                            tmp_path):
    model_dir = tmp_path / "run"
    bindings = _distillation(tiny_data_dir, tiny_teacher, "input_pipeline.batch_size = 4",
                             "train.steps = 16", "train.checkpoint_every = 4")

    def cli(index: int) -> list[str]:
        return [sys.executable, "-m", "kdod.train", f"--gin_file={TINY_GIN}",
                f"--model_dir={model_dir}", "--strategy=multi_worker",
                *[f"--gin_param={b}" for b in bindings]]

    workers = _start_workers(cli, _free_ports(2), tmp_path, "killed")
    deadline = time.time() + 300
    while not _latest_step(model_dir):
        assert all(w.poll() is None for w in workers), "training ended before it was killed"
        assert time.time() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.1)
    os.killpg(workers[1].pid, signal.SIGKILL)
    # Synchronous training needs every worker: the chief now waits on the dead one's
    # collectives, and the cluster is started again as a whole (as a cluster manager does).
    os.killpg(workers[0].pid, signal.SIGKILL)
    for worker in workers:
        worker.wait()
    killed_at = _latest_step(model_dir)
    assert 4 <= killed_at < 16

    restarted = _start_workers(_driver(model_dir, tmp_path, bindings), _free_ports(2), tmp_path,
                               "resumed")
    for log in _finish(restarted, tmp_path, "resumed"):
        assert f"Resuming from step {killed_at}." in log
    assert _latest_step(model_dir) == 16
    _same_weights(tmp_path)


def test_two_workers_run_a_study_together_and_only_the_chief_writes(tiny_data_dir, tmp_path):
    results, runs = tmp_path / "study.json", tmp_path / "runs"
    bindings = [f"input_pipeline.data_dir = '{tiny_data_dir}'", "input_pipeline.batch_size = 4",
                "train.steps = 4", "train.checkpoint_every = 4", "train.summary_images = 0"]
    workers = _start_workers(
        lambda index: [sys.executable, "-c", STUDY_WORKER, str(results), str(runs), *bindings],
        _free_ports(2), tmp_path, "study")
    _finish(workers, tmp_path, "study")
    measured = [json.loads((tmp_path / f"study{index}.out").read_text().strip().splitlines()[-1])
                for index in range(2)]
    assert measured[0] == measured[1]  # Trained and evaluated together: the same numbers.
    assert measured[0]["kl cached"][0]["teacher_cache_minutes"] > 0
    recorded = json.loads(results.read_text())["runs"]
    assert {entry["model"]: [entry["metrics"]] for entry in recorded.values()} == measured[0]
    assert not (runs / "kl_cache").exists()  # Made once, deleted once the run was recorded.
    assert "teacher_cache = " in (runs / "kl_cached" / "operative_config.gin").read_text()
    for name in ("teacher", "kl_cached"):
        assert [p.name for p in checkpoints.checkpoint_paths(runs / name)] == ["ckpt-4.weights.h5"]

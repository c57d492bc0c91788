"""The teacher-output cache: it round-trips, a cached step's losses are the online step's, a
cache of another teacher, loss set or image size is refused by name, and training reads it."""

import subprocess
import sys

import gin
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, TINY_GIN

from kdod import checkpoints, config, train_lib
from kdod.cache_teacher_lib import make_cache
from kdod.data import cache
from kdod.detection.detector import Detector, DetectorConfig
from kdod.distill.distiller import DistillerConfig, build_distiller

KL_AND_FEATURES = "DistillerConfig.losses = {'kl_logits': 1.0, 'feature_imitation': 1.0}"


def _untrained_teacher(folder, data_dir: str, seed: int, *bindings: str) -> str:
    """A kdod run folder holding a tiny teacher (wider neck than the student: adapters)."""
    gin.clear_config()
    config.parse_gin([TINY_GIN], [f"input_pipeline.data_dir = '{data_dir}'",
                                  "fpn_lite.filters = 48", *bindings])
    keras.utils.set_random_seed(seed)
    checkpoints.save_detector(Detector(DetectorConfig()), folder)
    config.write_operative_config(folder)
    gin.clear_config()
    return str(folder)


@pytest.fixture(scope="module")
def teachers(tiny_data_dir, tmp_path_factory) -> tuple[str, str]:
    """Two teachers of one architecture, with different weights."""
    return tuple(_untrained_teacher(tmp_path_factory.mktemp(f"teacher{seed}"), tiny_data_dir,
                                    seed) for seed in (0, 1))


def _recipe(data_dir: str, teacher_dir: str, *extra: str) -> None:
    gin.clear_config()
    config.parse_gin([TINY_GIN], [
        f"input_pipeline.data_dir = '{data_dir}'", "input_pipeline.batch_size = 4",
        "train.summary_images = 0", "train.distillation = @DistillerConfig()",
        f"DistillerConfig.teacher_dir = '{teacher_dir}'", KL_AND_FEATURES,
        "feature_imitation.mask = 'gt'", *extra])


@pytest.fixture(scope="module")
def kl_features_cache(tiny_data_dir, teachers, tmp_path_factory) -> tuple[str, dict]:
    """A 6-example cache of teacher 0 for kl_logits + feature_imitation, in shards of 4."""
    _recipe(tiny_data_dir, teachers[0])
    path = str(tmp_path_factory.mktemp("cache"))
    manifest = make_cache(path, examples=6, examples_per_shard=4, verbose=False)
    gin.clear_config()
    return path, manifest


def test_the_cache_round_trips_examples_and_the_outputs_the_losses_read(kl_features_cache):
    path, manifest = kl_features_cache
    assert manifest["examples"] == 6 and len(manifest["shards"]) == 2
    assert manifest["teacher_outputs"] == ["teacher/cls_logits", "teacher/features/3",
                                           "teacher/features/4", "teacher/features/5"]
    assert manifest["outputs_needed"]["kl_logits"] == ["teacher/cls_logits"]
    assert manifest["image_size"] == 128 and manifest["seed"] == 0
    examples = list(cache.cached_examples(path))
    assert len(examples) == 6
    first = examples[0]
    assert set(first) == {*cache.EXAMPLE_KEYS, *manifest["teacher_outputs"]}
    assert first["image"].dtype == tf.uint8 and first["image"].shape == (128, 128, 3)
    assert first["teacher/features/3"].dtype == tf.float16
    assert first["teacher/features/3"].shape == (16, 16, 48)
    assert first["teacher/cls_logits"].shape[-1] == 1
    assert first["boxes"].shape[1] == 4 and first["labels"].shape == first["boxes"].shape[:1]
    assert cache.bytes_per_example(path) > 128 * 128 * 3


def test_training_from_the_cache_replays_the_online_run(tiny_data_dir, teachers, tmp_path,
                                                       clean_gin):
    """The cache holds the online run's batches in its order (same seed): the first steps
    train on the same images from the same weights, so their losses agree to the float16 of
    the cached teacher outputs."""
    steps = ("train.steps = 3", "train.checkpoint_every = 1")
    _recipe(tiny_data_dir, teachers[0], *steps)
    online = train_lib.train(str(tmp_path / "online"))
    make_cache(tmp_path / "cache", verbose=False)  # train.steps x the batch size: 12 examples.
    _recipe(tiny_data_dir, teachers[0], *steps,
            f"DistillerConfig.teacher_cache = '{tmp_path / 'cache'}'")
    cached = train_lib.train(str(tmp_path / "cached"))
    assert cached.reads_cache and not online.reads_cache
    assert len(cached.adapters) == 3  # feature_imitation's, trained with the student.
    # The KL of two untrained models is ~1e-5, a difference of nearly equal logits: hence `abs`.
    for name in ("kl_logits", "feature_imitation", "total"):
        expected = online.history.history[name]
        assert min(expected) > 0, name
        assert cached.history.history[name] == pytest.approx(expected, rel=1e-2, abs=1e-6), name


def test_a_cache_of_another_teacher_is_refused_naming_it(tiny_data_dir, teachers,
                                                         kl_features_cache, clean_gin):
    path, _ = kl_features_cache
    _recipe(tiny_data_dir, teachers[1], f"DistillerConfig.teacher_cache = '{path}'")
    with pytest.raises(cache.CacheMismatchError, match="the teacher's weights differ") as error:
        build_distiller(DistillerConfig())
    assert teachers[0] in str(error.value) and teachers[1] in str(error.value)


def test_a_cache_for_other_losses_is_refused_naming_the_missing_outputs(
        tiny_data_dir, teachers, kl_features_cache, clean_gin):
    path, _ = kl_features_cache
    _recipe(tiny_data_dir, teachers[0], f"DistillerConfig.teacher_cache = '{path}'",
            "DistillerConfig.losses = {'kl_logits': 1.0, 'bounded_regression': 1.0}")
    with pytest.raises(ValueError, match=r"bounded_regression needs the teacher's "
                       r"teacher/box_regression, which the cache does not hold \(it holds "
                       r"teacher/cls_logits, .*made for the losses kl_logits, "
                       r"feature_imitation\)"):
        build_distiller(DistillerConfig())


def test_a_cache_for_another_image_size_is_refused(kl_features_cache):
    path, manifest = kl_features_cache
    cache.check_matches(path, manifest)  # Its own run's expectations pass.
    with pytest.raises(cache.CacheMismatchError, match="image size 128 in the cache vs 96 here"):
        cache.check_matches(path, {**manifest, "image_size": 96})


def test_an_unfinished_cache_is_refused_with_the_command_that_makes_it(tmp_path):
    with pytest.raises(cache.IncompleteCacheError, match="python -m kdod.cache_teacher"):
        cache.cached_examples(tmp_path)


def test_training_reads_the_cache_and_saves_the_student_alone(tiny_data_dir, teachers,
                                                               kl_features_cache, tmp_path,
                                                               clean_gin):
    path, _ = kl_features_cache
    _recipe(tiny_data_dir, teachers[0], f"DistillerConfig.teacher_cache = '{path}'",
            "train.steps = 2", "train.checkpoint_every = 2")
    model = train_lib.train(str(tmp_path / "run"))
    assert model.reads_cache
    history = model.history.history
    assert np.isfinite(history["kl_logits"]).all() and np.isfinite(history["total"]).all()
    gin.clear_config()
    config.parse_gin([TINY_GIN])
    # The saved file is the student's network exactly: no adapter weights.
    checkpoints.load_detector(Detector(DetectorConfig()), tmp_path / "run")


def test_cache_teacher_help_lists_its_flags():
    result = subprocess.run([sys.executable, "-m", "kdod.cache_teacher", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]  # absl's --help exits 1.
    for flag in ("--output", "--teacher_dir", "--examples", "--seed", "--gin_file"):
        assert flag in result.stdout


def test_a_cache_of_a_teacher_at_twice_the_size_replays_the_online_run(tiny_data_dir, tmp_path,
                                                                       clean_gin):
    """The teacher at 256 px (levels 4-6) sees its own view of each example in both runs; its
    features are cached under the student's levels (3-5) they match."""
    teacher = _untrained_teacher(tmp_path / "teacher", tiny_data_dir, 0,
                                 "DetectorConfig.image_size = 256", "AnchorConfig.min_level = 4",
                                 "AnchorConfig.max_level = 6")
    steps = ("train.steps = 2", "train.checkpoint_every = 1")
    _recipe(tiny_data_dir, teacher, *steps)
    online = train_lib.train(str(tmp_path / "online"))
    manifest = make_cache(tmp_path / "cache", verbose=False)
    assert manifest["teacher_outputs"] == ["teacher/cls_logits", "teacher/features/3",
                                           "teacher/features/4", "teacher/features/5"]
    first = next(iter(cache.cached_examples(tmp_path / "cache")))
    assert first["image"].shape == (128, 128, 3)
    assert first["teacher/features/3"].shape == (16, 16, 48)
    _recipe(tiny_data_dir, teacher, *steps,
            f"DistillerConfig.teacher_cache = '{tmp_path / 'cache'}'")
    cached = train_lib.train(str(tmp_path / "cached"))
    for name in ("kl_logits", "feature_imitation"):
        assert cached.history.history[name] == pytest.approx(online.history.history[name],
                                                             rel=1e-2, abs=1e-6), name

"""Shared fixtures: a private TFDS folder holding the tiny synthetic plate set."""

from pathlib import Path

import gin
import pytest

REPO = Path(__file__).resolve().parents[1]
TINY_GIN = str(REPO / "gin" / "tiny.gin")
# With gin/tiny.gin: a detector that overfits the first 8 tiny training images (no
# augmentation, a wider tiny CNN), so tests have a model that really finds plates.
OVERFIT_TINY = [
    "input_pipeline.sources = [('synthetic_plates/tiny', 'train[:8]', 1.0)]",
    "eval/input_pipeline.sources = [('synthetic_plates/tiny', 'train[:8]', 1.0)]",
    "input_pipeline.augmentation = @Augmentation()",
    "Augmentation.min_scale = 1.0", "Augmentation.max_scale = 1.0",
    "Augmentation.flip_prob = 0.0", "Augmentation.brightness = 0.0",
    "Augmentation.contrast = 0.0", "Augmentation.saturation = 0.0", "Augmentation.hue = 0.0",
    "train.summary_images = 0", "make_optimizer.learning_rate = 0.01",
    "make_optimizer.warmup_steps = 20", "tiny_cnn.width = 16", "fpn_lite.filters = 48",
    "DetectorConfig.head_convs = 2",
]


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A TFDS data_dir with synthetic_plates/tiny built in it (a few seconds, once per session)."""
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  Registers the builders.

    data_dir = str(tmp_path_factory.mktemp("tensorflow_datasets"))
    tfds.builder("synthetic_plates/tiny", data_dir=data_dir).download_and_prepare()
    return data_dir


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()


def damage_middle(path: Path) -> None:
    """Zeroes bytes in the middle of a file, its size unchanged (a bad disk block, a bad copy)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
    path.write_bytes(bytes(data))

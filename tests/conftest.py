"""Shared fixtures (a private TFDS folder holding the tiny synthetic plate set) and helpers."""

from pathlib import Path

import gin
import numpy as np
import pytest
from PIL import Image

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


def tiny_detector(width: int, name: str, anchors=None, box_bins: int = 0,
                  image_size: int = 64):
    """A tiny-CNN detector of `image_size` px (one head conv, tiny_cnn.width `width`, levels 3-5
    with one scale unless `anchors` says otherwise), under the gin config of the moment, then
    cleared."""
    from kdod import config
    from kdod.detection.anchors import AnchorConfig
    from kdod.detection.detector import Detector, DetectorConfig

    config.parse_gin([], [f"tiny_cnn.width = {width}"])  # Loads the backbones, then binds.
    anchors = anchors or AnchorConfig(min_level=3, max_level=5, scales_per_octave=1)
    model = Detector(DetectorConfig(backbone="tiny_cnn", neck="fpn_lite", image_size=image_size,
                                    anchor_config=anchors, head_convs=1, box_bins=box_bins),
                     name=name)
    gin.clear_config()
    return model


def two_image_batch() -> dict:
    """Two random 64-px images with one plate each, for training steps of `tiny_detector`s."""
    import tensorflow as tf

    return {"image": tf.random.uniform([2, 64, 64, 3], 0, 255, seed=1),
            "boxes": tf.constant([[[0.2, 0.2, 0.4, 0.7]], [[0.5, 0.1, 0.6, 0.5]]]),
            "labels": tf.constant([[0], [0]])}


def render_plate(text: str, style: str, header: str, footer: str, height: int = 60,
                 border: int = 6) -> np.ndarray:
    """A flat plate (uint8 RGB) of a style of `plates.PLATE_STYLES`, with `border` pixels of grey
    around it, as a detector cuts it."""
    from tfds_builders.synthetic_plates import plates

    chosen = next(s for s in plates.PLATE_STYLES if s.name == style)
    spec = plates.PlateSpec(text, chosen, "DejaVuSans-Bold.ttf", round(height * chosen.aspect),
                            height, np.zeros((4, 2)), False, header, footer)
    plate = plates.plate_pixels(spec, decorations=True)
    canvas = Image.new("RGBA", (plate.width + 2 * border, plate.height + 2 * border),
                       (120, 120, 120, 255))
    canvas.alpha_composite(plate, (border, border))
    return np.asarray(canvas.convert("RGB"))

"""synthetic_plates: road scenes with licence plates, rendered by this package's scene.py."""

from __future__ import annotations

import dataclasses
import multiprocessing
import zlib
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders.features import plate_features
from tfds_builders.synthetic_plates.config import DEFAULT_PLATE_FORMATS, SceneConfig
from tfds_builders.synthetic_plates.scene import render_scene

HOMEPAGE = "https://github.com/kdod/kdod#readme"

_DESCRIPTION = """\
Road-photo-like scenes rendered locally (no download) with 0 to 3 licence plates each, in
several styles (white, yellow, black, EU with a blue band, US with a state name and slogan) and
registration formats, at sizes from tiny to large, rotated, in perspective, with lighting, blur,
noise and JPEG artifacts, among cars, buildings, signs, distractor text and blank plate-like
rectangles. Each plate has a tight box and its registration (letters and digits only).
"""


@dataclasses.dataclass
class SyntheticPlatesConfig(tfds.core.BuilderConfig):
    """Image size, split sizes, seed and plate content of one generated variant."""

    image_size: int = 320
    num_train: int = 3000
    num_validation: int = 500
    num_test: int = 500
    seed: int = 0
    plate_formats: tuple[str, ...] = DEFAULT_PLATE_FORMATS
    max_plates: int = 3

    def scene_config(self) -> SceneConfig:
        return SceneConfig(height=self.image_size, width=self.image_size,
                           plate_formats=self.plate_formats, max_plates=self.max_plates)

    def split_sizes(self) -> dict[str, int]:
        return {"train": self.num_train, "validation": self.num_validation,
                "test": self.num_test}


def scene_seed(config_seed: int, split: str, index: int) -> int:
    """A seed fixed by (config seed, split name, index), independent of generation order."""
    sequence = np.random.SeedSequence([config_seed, zlib.crc32(split.encode()), index])
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def render_example(job: tuple[str, int, int, SceneConfig]) -> tuple[int, dict]:
    """One TFDS example; top level so pool workers can unpickle it."""
    split, index, config_seed, scene_config = job
    scene = render_scene(scene_seed(config_seed, split, index), scene_config)
    return index, {
        "image": scene.jpeg,  # the renderer's own JPEG bytes: TFDS stores them as they are
        "image/filename": f"{split}_{index:06d}.jpg",
        "objects": {
            "bbox": scene.boxes,
            "label": np.zeros(len(scene.texts), dtype=np.int64),
            "text": scene.texts,
        },
    }


def _pool_context():
    # fork starts workers without re-importing TensorFlow; workers only run numpy and PIL.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


class Builder(tfds.core.GeneratorBasedBuilder):
    """DatasetBuilder for synthetic_plates."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS: ClassVar[list[SyntheticPlatesConfig]] = [
        SyntheticPlatesConfig(name="tiny", description="128x128, 24/8/8 images; for tests.",
                              image_size=128, num_train=24, num_validation=8, num_test=8,
                              seed=1),
        SyntheticPlatesConfig(name="quick", description="320x320, 3000/500/500 images.",
                              image_size=320, num_train=3000, num_validation=500,
                              num_test=500, seed=2),
        SyntheticPlatesConfig(name="large", description="640x640, 50000/5000/5000 images.",
                              image_size=640, num_train=50000, num_validation=5000,
                              num_test=5000, seed=3),
    ]
    DEFAULT_CONFIG_NAME = "quick"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=plate_features(with_text=True),
            supervised_keys=None,
            homepage=HOMEPAGE,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # everything is rendered locally
        return {split: self._generate_examples(split, count)
                for split, count in self.builder_config.split_sizes().items()}

    def _generate_examples(self, split: str, count: int):
        config = self.builder_config
        jobs = ((split, index, config.seed, config.scene_config()) for index in range(count))
        workers = multiprocessing.cpu_count()
        chunksize = max(1, min(16, count // (4 * workers)))
        with _pool_context().Pool(workers) as pool:
            # imap keeps index order, so the output does not depend on worker timing.
            yield from pool.imap(render_example, jobs, chunksize=chunksize)

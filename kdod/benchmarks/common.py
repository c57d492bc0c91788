"""What the benchmarks share: their options, the recipes' folder and small helpers.

No TensorFlow at import (the entry point imports this module for ``--help``): the helpers
that need it import it when called.
"""

from __future__ import annotations

import dataclasses
import datetime
import fnmatch
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import gin
import numpy as np

from kdod import config, distribute

if TYPE_CHECKING:
    import tensorflow as tf

REPO_GIN = Path(__file__).resolve().parents[2] / "gin"
SYNTHETIC = "synthetic_plates/quick"  # The TFDS set every benchmark trains and measures on.


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
    """The command line of `python -m kdod.benchmark`, as the benchmarks read it.

    Attributes:
      output: JSON file for the results; None: benchmarks/<name>.json.
      data_dir: TFDS data_dir; None: TFDS's own.
      num_batches: batches timed for throughput numbers.
      seeds: distill: seeds per model.
      teacher_steps: distill and export: training steps of each teacher.
      student_steps: distill and export: training steps of each student.
      bindings: gin bindings added to every run of the benchmarks that train recipes
        (real: e.g. another test set, ``REAL_TEST = ('number_plates', 'test', 1.0)``).
      ocr_model: ocr: plate_ctc's recognizer (a kdod.train_ocr run folder or .tflite).
      text_csv: ocr: real plate crops of known text, a CSV of filename,plate_text rows.
      recorded_only: losses: tabulate the runs recorded so far, train none.
      only: real, losses: fnmatch patterns of model names; only the runs of models matching
        one are trained, the others' recorded runs are counted and the rest left out.
      strategy: the tf.distribute strategy the benchmarks' training and evaluation run under
        (mirrored, TPU, or multi_worker for the studies); None: one device.
    """

    output: Path | None = None
    data_dir: str | None = None
    num_batches: int = 100
    seeds: int = 3
    teacher_steps: int = 1000
    student_steps: int = 600
    bindings: tuple[str, ...] = ()
    ocr_model: str | None = None
    text_csv: str | None = None
    recorded_only: bool = False
    only: tuple[str, ...] = ()
    strategy: tf.distribute.Strategy | None = None

    def output_path(self, name: str) -> Path:
        return self.output or Path(f"benchmarks/{name}.json")

    def trains(self, model: str) -> bool:
        """Whether a study trains the runs of `model` it has not recorded (`recorded_only`
        trains none, `only` those its patterns match)."""
        return not self.recorded_only and (
            not self.only or any(fnmatch.fnmatchcase(model, pattern) for pattern in self.only))

    @property
    def chief(self) -> bool:
        """Whether this process measures this machine and writes files: not the workers of
        a multi-worker strategy other than its chief."""
        return distribute.is_chief(self.strategy)

    @property
    def runs_dir(self) -> Path:
        """Where benchmark training runs go: beside the results file."""
        return (self.output.parent if self.output else Path("benchmarks")) / "runs"

    @property
    def data_binding(self) -> str:
        """The gin binding that points the recipes' input pipeline at `data_dir`."""
        return f"input_pipeline.data_dir = {self.data_dir!r}"


def recipe(name: str) -> str:
    """The path of a gin recipe of the repository, e.g. `recipe("student_small.gin")`."""
    return str(REPO_GIN / name)


def parse_recipe(gin_file: str, *bindings: str) -> None:
    """Replaces the gin config by `gin_file` and `bindings`."""
    gin.clear_config()
    config.parse_gin([gin_file], list(bindings))


def prepared_synthetic(options: BenchmarkOptions):
    """The TFDS builder of `SYNTHETIC`, generated first if `options.data_dir` lacks it."""
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  Registers the builders.

    builder = tfds.builder(SYNTHETIC, data_dir=options.data_dir)
    builder.download_and_prepare()
    return builder


def random_batch(image_size: int, batch_size: int) -> dict:
    """Random images with two fixed boxes each: enough for timing a training step."""
    import tensorflow as tf

    boxes = tf.tile(tf.constant([[[0.4, 0.3, 0.5, 0.6], [0.6, 0.1, 0.65, 0.3]]]),
                    [batch_size, 1, 1])
    return {"image": tf.random.uniform([batch_size, image_size, image_size, 3], 0, 255),
            "boxes": boxes, "labels": tf.zeros([batch_size, 2], tf.int32)}


def mean_std(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def machine() -> dict:
    """What the numbers were measured on."""
    import tensorflow as tf

    return {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}

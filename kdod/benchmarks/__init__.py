"""The benchmarks, one module each; `python -m kdod.benchmark NAME` runs one (see its --help).

    data.py       synthetic generation and input pipeline, images/s
    detector.py   recipe training speed, latency and head cost; student_small AP50
    distill.py    teacher / student alone / each distillation recipe: AP over seeds; step cost
    ocr.py        exact match, CER and ms per plate of each OCR engine
    export.py     size, latency and AP of the Keras, SavedModel and TFLite forms
    real.py       teacher / student alone / distilled students on the real car_plates split
    losses.py     every distillation loss alone and the best pair, real and synthetic plates
    scale.py      teacher cache vs online distillation: step time, AP, size; MirroredStrategy
    study.py      runs of such studies, recorded in the results file as they finish
    targets.py    every target, in one table; common.py: options and shared helpers

Each module has `run(BenchmarkOptions) -> dict`, the results written to benchmarks/NAME.json.
Importing this package is cheap: a benchmark's module, which imports TensorFlow, loads when
the benchmark runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from kdod.benchmarks.common import BenchmarkOptions

NAMES = ("data", "detector", "distill", "ocr", "export", "real", "losses", "scale")
# The benchmarks of trained runs recorded in a ledger (study.py): they also run on several
# machines under multi_worker.
STUDIES = ("real", "losses", "scale")


def _lazy_run(name: str) -> Callable[[BenchmarkOptions], dict]:
    def run(options: BenchmarkOptions) -> dict:
        return importlib.import_module(f"{__name__}.{name}").run(options)

    return run


BENCHMARKS: dict[str, Callable[[BenchmarkOptions], dict]] = {
    name: _lazy_run(name) for name in NAMES}

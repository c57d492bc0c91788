r"""Benchmarks; each writes its numbers to a JSON file (default benchmarks/<name>.json).

    python -m kdod.benchmark data       # synthetic generation and input pipeline, images/s
    python -m kdod.benchmark detector   # recipe training speed, latency, head cost, student AP50
    python -m kdod.benchmark distill    # teacher / student / distilled AP over seeds, step cost
    python -m kdod.benchmark ocr        # exact match, CER and ms per plate of each OCR engine
    python -m kdod.benchmark ocr --ocr_model=runs/plate_ctc [--text_csv=real/labels.csv]
    python -m kdod.benchmark export     # size, latency and AP of Keras/SavedModel/TFLite forms
    python -m kdod.benchmark real       # teacher / student / distilled on real plates, seeds
    python -m kdod.benchmark losses     # every distillation loss and the best pair, AP gain/cost
    python -m kdod.benchmark losses --recorded_only  # its tables so far, nothing trained
    python -m kdod.benchmark real --only='*mosaic*'  # train those models' runs; count the rest
    python -m kdod.benchmark scale      # teacher cache: step time, AP vs online, size; mirrored

Several names run one after the other. `--strategy=mirrored` (or `tpu --tpu=NAME`) trains and
evaluates the recipes of distill, detector, export, real, losses and scale under that strategy.
The studies (real, losses, scale) also run across machines: start the same command on every
worker of TF_CONFIG with `--strategy=multi_worker` and an --output every worker sees; they train
and evaluate each run together, the chief writes the results (kdod/benchmarks/study.py).
The benchmarks live in `kdod.benchmarks`, their targets in `kdod.benchmarks.targets`; speed
targets are checked there, never in timed tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from kdod import config, distribute
from kdod.benchmarks import BENCHMARKS, STUDIES
from kdod.benchmarks.common import BenchmarkOptions, machine
from kdod.files import write_json

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.
flags.adopt_module_key_flags(distribute)  # ... and --strategy, --tpu.

_DEFAULTS = BenchmarkOptions()
flags.DEFINE_string("output", None, "JSON file for the results (default benchmarks/<name>.json).")
flags.DEFINE_string("data_dir", _DEFAULTS.data_dir, "TFDS data_dir (default: TFDS's own).")
flags.DEFINE_integer("num_batches", _DEFAULTS.num_batches, "Batches timed for throughput numbers.")
flags.DEFINE_integer("seeds", _DEFAULTS.seeds, "distill, real, losses, scale: seeds per model.")
flags.DEFINE_integer("teacher_steps", _DEFAULTS.teacher_steps,
                     "distill, export, losses (synthetic), scale: training steps of each teacher.")
flags.DEFINE_integer("student_steps", _DEFAULTS.student_steps,
                     "distill, export, losses (synthetic), scale: training steps of each student.")
flags.DEFINE_string("ocr_model", None, "ocr: plate_ctc's recognizer, a run folder of python -m "
                    "kdod.train_ocr or its plate_ctc.tflite (without it plate_ctc is skipped).")
flags.DEFINE_string("text_csv", None, "ocr: also read these real plate crops, a CSV of "
                    "filename,plate_text rows (names relative to the CSV's folder).")
flags.DEFINE_multi_string("only", [], "real, losses: train only the runs of models matching "
                          "this fnmatch pattern (e.g. '*mosaic*'; repeat the flag for more); "
                          "other models count their recorded runs.")
flags.DEFINE_bool("recorded_only", False, "losses: write the tables and plot of the runs "
                  "recorded so far, training none (a study of many CPU-hours in progress).")


def options_from_flags(strategy=None) -> BenchmarkOptions:
    flag = flags.FLAGS
    return BenchmarkOptions(output=Path(flag.output) if flag.output else None,
                            data_dir=flag.data_dir, num_batches=flag.num_batches,
                            seeds=flag.seeds, teacher_steps=flag.teacher_steps,
                            student_steps=flag.student_steps, bindings=tuple(flag.gin_param),
                            ocr_model=flag.ocr_model, text_csv=flag.text_csv,
                            recorded_only=flag.recorded_only, only=tuple(flag.only),
                            strategy=strategy)


def main(argv: list[str]) -> None:
    names = argv[1:]
    if not names or any(name not in BENCHMARKS for name in names):
        raise config.ConfigError(f"Name a benchmark: {', '.join(BENCHMARKS)} "
                                 f"(got {' '.join(names) or 'none'}).")
    one_machine = [name for name in names if name not in STUDIES]
    if flags.FLAGS.strategy == "multi_worker" and one_machine:
        raise config.ConfigError(
            f"{', '.join(one_machine)} measure(s) one machine: run it with --strategy=mirrored "
            f"or tpu. Across machines (multi_worker) run the studies: {', '.join(STUDIES)}.")
    if flags.FLAGS.recorded_only and names != ["losses"]:
        raise config.ConfigError("--recorded_only tabulates the losses study alone: run "
                                 f"`losses --recorded_only` (got {' '.join(names)}).")
    if flags.FLAGS.only and not set(names) <= {"real", "losses"}:
        raise config.ConfigError("--only selects the runs of the real and losses studies "
                                 f"(got {' '.join(names)}).")
    strategy = distribute.strategy_from_flags()
    config.parse_flags_gin()
    options = options_from_flags(strategy)
    for name in names:
        results = BENCHMARKS[name](options)
        output = options.output_path(name)
        if options.chief:
            write_json(output, {"benchmark": name, "machine": machine(), **results})
            print(json.dumps(results, indent=1))
            print(f"Wrote {output}")
        # The workers wait for the chief's one-machine measurements: a worker that leaves
        # early is a crashed task to the cluster, and the chief's collectives are aborted.
        distribute.barrier(strategy)


if __name__ == "__main__":
    config.run(main)

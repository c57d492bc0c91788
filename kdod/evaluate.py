r"""COCO evaluation of a trained detector (pycocotools), and of plate reading with --ocr.

    python -m kdod.evaluate --model_dir=runs/tiny [--split=test] [--num_visualizations=8]
    python -m kdod.evaluate --exported=runs/tiny/export/model_int8.tflite [--split=test]
    python -m kdod.evaluate --model_dir=runs/tiny --ocr=rapidocr [--text_csv=truth.csv]
    python -m kdod.evaluate --model_dir=runs/tiny --ocr=plate_ctc --ocr_model=runs/plate_ctc
    python -m kdod.evaluate --model_dir=runs/tiny --strategy=mirrored   # over local devices
    TF_CONFIG=... python -m kdod.evaluate --model_dir=/shared/run --strategy=multi_worker

Without --gin_file, the run's own config (model_dir/config.gin) is used. Boxes
are compared in the pixels of the original images. Results go to
model_dir/eval_<split>/metrics.json and to TensorBoard (model_dir/logs/eval_<split>).
Under --strategy=multi_worker every worker of TF_CONFIG runs the same command: each evaluates its
replicas' share of every batch, all print the metrics, and the chief writes them.

--exported evaluates what `python -m kdod.export` wrote instead of a checkpoint: a
SavedModel folder or a .tflite file, fed the original images (it letterboxes them
itself), with the same COCO code; the config is the export folder's config.gin.
Results go to <export folder>/eval_<split>/<saved_model | tflite name>.json.

--ocr=<engine> adds plate-reading metrics (either model form): OCR alone on crops of the true
boxes (ocr_exact_match, ocr_cer) and end to end (end_to_end_exact_match, end_to_end_cer: a
plate counts when a detection scoring at least --min_score overlaps it at IoU >= 0.5 and reads
it exactly). Crops come from the original images. The plate text is the data's objects/text
(synthetic_plates has it) or, with --text_csv, a CSV of filename,plate_text rows (one row per
plate, in the order of the image's boxes; images it does not name are left out).
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from kdod import config, distribute

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.
flags.adopt_module_key_flags(distribute)  # ... and --strategy, --tpu.

flags.DEFINE_string("split", None, "Split to evaluate; default: the split in the gin sources.")
flags.DEFINE_integer("num_visualizations", 0, "Write this many PNGs with predicted (red) and "
                     "true (green) boxes to model_dir/eval_<split>/visualizations.",
                     lower_bound=0)
flags.DEFINE_string("exported", None, "Evaluate an exported model instead of --model_dir: a "
                    "SavedModel folder or a .tflite file written by python -m kdod.export.")
flags.DEFINE_enum("runtime", "litert", ["litert", "tf"], "Interpreter for --exported .tflite: "
                  "LiteRT (ai-edge-litert) or TensorFlow's tf.lite.Interpreter.")
flags.DEFINE_string("ocr", None, "Also measure plate reading with this OCR backend (a name in "
                    "kdod.OCR_BACKENDS, e.g. rapidocr); default: COCO metrics only.")
flags.DEFINE_string("ocr_model", None, "With --ocr=plate_ctc: the recognizer, a run folder of "
                    "python -m kdod.train_ocr or its plate_ctc.tflite.")
flags.DEFINE_string("formats", None, "With --ocr: plate formats for correction, as in "
                    "kdod.recognize ('us', 'uk+us', 'synthetic' or 'LLDDLLL,DLLLDDD').")
flags.DEFINE_string("text_csv", None, "With --ocr: plate text from this CSV of "
                    "filename,plate_text rows instead of the data's objects/text.")
flags.DEFINE_integer("max_text_images", None, "With --ocr: read the plates of at most this "
                     "many images (OCR is slow).", lower_bound=1)
flags.DEFINE_float("min_score", 0.3, "With --ocr: end to end, detections scoring lower are "
                   "not read (as in kdod.recognize).", lower_bound=0.0, upper_bound=1.0)


def text_evaluation():
    """The plate-reading request of the --ocr flags, or None without --ocr."""
    given = flags.FLAGS
    if not given.ocr:
        stray = [f"--{name}" for name in ("formats", "text_csv", "max_text_images", "ocr_model")
                 if given[name].value is not None]
        if stray:
            raise config.ConfigError(f"{', '.join(stray)} only apply with --ocr=<engine>.")
        return None
    from kdod.eval_lib import TextEvaluation

    return TextEvaluation(given.ocr, given.formats, given.text_csv, given.max_text_images,
                          given.min_score, given.ocr_model)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if flags.FLAGS.exported:
        main_exported(flags.FLAGS.exported)
        return
    model_dir = flags.FLAGS.model_dir
    if not model_dir:
        raise config.ConfigError("--model_dir is required: the directory of a training run "
                                 "(or --exported: a SavedModel or .tflite file).")
    strategy = distribute.strategy_from_flags()  # First: multi_worker needs it before TF runs.
    config.parse_gin(config.run_gin_files(model_dir), flags.FLAGS.gin_param)
    from kdod.eval_lib import evaluate  # After flag parsing: TensorFlow loads slowly.

    metrics = evaluate(model_dir, flags.FLAGS.split, flags.FLAGS.num_visualizations,
                       text=text_evaluation(), strategy=strategy)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


def main_exported(path: str) -> None:
    if flags.FLAGS.model_dir:
        raise config.ConfigError("Give --model_dir or --exported, not both.")
    if flags.FLAGS.strategy != "default":
        raise config.ConfigError("--strategy applies to --model_dir: an exported model runs "
                                 "on one device (--exported).")
    if not Path(path).exists():
        raise config.ConfigError(f"--exported={path} does not exist.")
    from kdod.exported import export_folder  # After flag parsing: TensorFlow loads slowly.

    gin_files = flags.FLAGS.gin_file or [str(export_folder(path) / config.FULL_CONFIG)]
    config.parse_gin(gin_files, flags.FLAGS.gin_param)
    from kdod.eval_lib import evaluate_exported

    metrics = evaluate_exported(path, flags.FLAGS.split, flags.FLAGS.runtime,
                                text=text_evaluation())
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    config.run(main)

r"""COCO evaluation of a trained detector (pycocotools).

    python -m kdod.evaluate --model_dir=runs/tiny [--split=test] [--num_visualizations=8]
    python -m kdod.evaluate --exported=runs/tiny/export/model_int8.tflite [--split=test]

Without --gin_file, the run's own config (model_dir/config.gin) is used. Boxes
are compared in the pixels of the original images. Results go to
model_dir/eval_<split>/metrics.json and to TensorBoard (model_dir/logs/eval_<split>).

--exported evaluates what `python -m kdod.export` wrote instead of a checkpoint: a
SavedModel folder or a .tflite file, fed the original images (it letterboxes them
itself), with the same COCO code; the config is the export folder's config.gin.
Results go to <export folder>/eval_<split>/<saved_model | tflite name>.json.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from kdod import config

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.

flags.DEFINE_string("split", None, "Split to evaluate; default: the split in the gin sources.")
flags.DEFINE_integer("num_visualizations", 0, "Write this many PNGs with predicted (red) and "
                     "true (green) boxes to model_dir/eval_<split>/visualizations.")
flags.DEFINE_string("exported", None, "Evaluate an exported model instead of --model_dir: a "
                    "SavedModel folder or a .tflite file written by python -m kdod.export.")
flags.DEFINE_enum("runtime", "litert", ["litert", "tf"], "Interpreter for --exported .tflite: "
                  "LiteRT (ai-edge-litert) or TensorFlow's tf.lite.Interpreter.")


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
    gin_files = flags.FLAGS.gin_file or [str(Path(model_dir) / config.FULL_CONFIG)]
    config.parse_gin(gin_files, flags.FLAGS.gin_param)
    from kdod.eval_lib import evaluate  # After flag parsing: TensorFlow loads slowly.

    metrics = evaluate(model_dir, flags.FLAGS.split, flags.FLAGS.num_visualizations)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


def main_exported(path: str) -> None:
    if flags.FLAGS.model_dir:
        raise config.ConfigError("Give --model_dir or --exported, not both.")
    if not Path(path).exists():
        raise config.ConfigError(f"--exported={path} does not exist.")
    from kdod.export_lib import export_folder  # After flag parsing: TensorFlow loads slowly.

    gin_files = flags.FLAGS.gin_file or [str(export_folder(path) / config.FULL_CONFIG)]
    config.parse_gin(gin_files, flags.FLAGS.gin_param)
    from kdod.eval_lib import evaluate_exported

    metrics = evaluate_exported(path, flags.FLAGS.split, flags.FLAGS.runtime)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    config.run(main)

r"""COCO evaluation of a trained detector (pycocotools).

    python -m kdod.evaluate --model_dir=runs/tiny [--split=test] [--num_visualizations=8]

Without --gin_file, the run's own config (model_dir/config.gin) is used. Boxes
are compared in the pixels of the original images. Results go to
model_dir/eval_<split>/metrics.json and to TensorBoard (model_dir/logs/eval_<split>).
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from kdod import config

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.

flags.DEFINE_string("split", None, "Split to evaluate; default: the split in the gin sources.")
flags.DEFINE_integer("num_visualizations", 0, "Write this many PNGs with predicted (red) and "
                     "true (green) boxes to model_dir/eval_<split>/visualizations.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    model_dir = flags.FLAGS.model_dir
    if not model_dir:
        raise config.ConfigError("--model_dir is required: the directory of a training run.")
    gin_files = flags.FLAGS.gin_file or [str(Path(model_dir) / config.FULL_CONFIG)]
    config.parse_gin(gin_files, flags.FLAGS.gin_param)
    from kdod.eval_lib import evaluate  # After flag parsing: TensorFlow loads slowly.

    metrics = evaluate(model_dir, flags.FLAGS.split, flags.FLAGS.num_visualizations)
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    config.run(main)

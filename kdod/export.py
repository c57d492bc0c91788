r"""Export a trained detector: TF OD API style SavedModel or TFLite (float32/16, dynamic, int8).

    python -m kdod.export --model_dir=runs/tiny --format=saved_model
    python -m kdod.export --model_dir=runs/tiny --format=tflite --quantize=int8

Writes into --output_dir (default model_dir/export): saved_model/ or model_<quantize>.tflite,
with label_map.pbtxt, anchors.npy (TFLite decoding) and config.gin beside it. Without
--gin_file, the run's own config (model_dir/config.gin) rebuilds the detector. int8 calibrates
on `export.calibration_count` training images (gin). Evaluate the result with
python -m kdod.evaluate --exported=PATH.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from kdod import config

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.

flags.DEFINE_enum("format", "saved_model", ["saved_model", "tflite"], "What to export.")
flags.DEFINE_enum("quantize", "float32", ["float32", "float16", "dynamic", "int8"],
                  "TFLite weights/activations: float32, float16 weights, dynamic-range int8 "
                  "weights, or full-integer int8 with uint8 input.")
flags.DEFINE_string("output_dir", None, "Export folder (default: model_dir/export).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    model_dir = flags.FLAGS.model_dir
    if not model_dir:
        raise config.ConfigError("--model_dir is required: the directory of a training run.")
    gin_files = config.run_gin_files(model_dir)
    output_dir = flags.FLAGS.output_dir or str(Path(model_dir) / "export")
    config.check_output_folder("--output_dir", output_dir)
    config.parse_gin(gin_files, flags.FLAGS.gin_param)
    from kdod import eval_lib, export_lib  # After flag parsing: TensorFlow loads slowly.

    detector = eval_lib.load_trained(model_dir)
    print(f"Exporting {flags.FLAGS.format} ({flags.FLAGS.quantize}) to {output_dir} ...")
    path = export_lib.export(detector, output_dir, flags.FLAGS.format, flags.FLAGS.quantize,
                             model_dir=model_dir)
    size_mb = sum(p.stat().st_size for p in [path, *path.rglob("*")] if p.is_file()) / 2**20
    print(f"Wrote {path} ({size_mb:.2f} MB)")


if __name__ == "__main__":
    config.run(main)

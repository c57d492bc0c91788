r"""Trains kdod's plate recognizer (the `plate_ctc` OCR backend) described by gin files.

    python -m kdod.train_ocr --gin_file=gin/ocr/plate_ctc.gin --model_dir=runs/plate_ctc

Killed and started again with the same command, it continues from the last checkpoint in
model_dir. It writes model_dir/plate_ctc.tflite (read with --ocr=plate_ctc
--ocr_model=runs/plate_ctc by kdod.evaluate, kdod.recognize and kdod.benchmark ocr), the
operative gin config and metrics.json. Fine-tuning on one's own crops: see kdod.train_ocr_lib.
"""

from __future__ import annotations

from absl import flags

from kdod import config

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS.model_dir:
        raise config.ConfigError("--model_dir is required: where checkpoints and logs go.")
    config.check_output_folder("--model_dir", flags.FLAGS.model_dir)
    config.parse_flags_gin()
    from kdod.train_ocr_lib import train_ocr  # After flag parsing: TensorFlow loads slowly.

    train_ocr(flags.FLAGS.model_dir)


if __name__ == "__main__":
    config.run(main)

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
    model_dir = config.training_model_dir(argv)
    config.parse_flags_gin()
    from kdod.train_ocr_lib import train_ocr  # After flag parsing: TensorFlow loads slowly.

    train_ocr(model_dir)


if __name__ == "__main__":
    config.run(main)

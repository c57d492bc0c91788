r"""Trains a detector described by gin files.

    python -m kdod.train --gin_file=gin/student_small.gin --model_dir=runs/student

Killed and started again with the same command, it continues from the last
checkpoint in model_dir (weights, optimizer state and step). The operative gin
config is written to model_dir/operative_config.gin.
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
    from kdod.train_lib import train  # After flag parsing: TensorFlow loads slowly.

    train(flags.FLAGS.model_dir)


if __name__ == "__main__":
    config.run(main)

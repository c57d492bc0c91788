r"""Trains a detector described by gin files.

    python -m kdod.train --gin_file=gin/student_small.gin --model_dir=runs/student
    python -m kdod.train --gin_file=gin/student_small.gin --model_dir=runs/student \
        --strategy=mirrored                      # every GPU of this machine
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \
      python -m kdod.train ... --model_dir=/shared/runs/student --strategy=multi_worker
    python -m kdod.train ... --model_dir=gs://bucket/student --strategy=tpu --tpu=my-tpu

Killed and started again with the same command, it continues from the last
checkpoint in model_dir (weights, optimizer state and step); with several workers,
start them all again. The operative gin config is written to
model_dir/operative_config.gin. `input_pipeline.batch_size` is the global batch,
split over the strategy's replicas; only the chief writes files (kdod.distribute).
"""

from __future__ import annotations

from absl import flags

from kdod import config, distribute

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.
flags.adopt_module_key_flags(distribute)  # ... and --strategy, --tpu.


def main(argv: list[str]) -> None:
    model_dir = config.training_model_dir(argv)
    # Before gin loads the modules: multi-worker collectives must be set up before TensorFlow
    # runs anything.
    strategy = distribute.strategy_from_flags()
    config.parse_flags_gin()
    from kdod.train_lib import train  # After flag parsing: TensorFlow loads slowly.

    train(model_dir, strategy=strategy)


if __name__ == "__main__":
    config.run(main)

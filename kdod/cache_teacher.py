r"""Runs a trained teacher once over the training data of a distillation recipe and stores its
outputs with the examples (kdod.data.cache), so training needs no teacher forward pass.

    python -m kdod.cache_teacher --gin_file=gin/kl_ssd.gin --output=runs/kl_cache \
        [--teacher_dir=runs/teacher_small] [--examples=48000] [--seed=0]
    python -m kdod.train --gin_file=gin/kl_ssd.gin --model_dir=runs/kl_cached \
        --gin_param="DistillerConfig.teacher_cache = 'runs/kl_cache'"

The cache holds `--examples` augmented training examples (default: train.steps x the batch
size, so the student sees each once), augmented with `--seed` (default: train.seed), and the
teacher outputs the recipe's losses read (floats as float16). Training refuses a cache of
another teacher, image size or set of losses, naming what differs.
"""

from __future__ import annotations

import json

from absl import flags

from kdod import config

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param.

flags.DEFINE_string("output", None, "Folder for the cache (TFRecord shards + manifest.json).")
flags.DEFINE_string("teacher_dir", None, "The teacher; default: DistillerConfig.teacher_dir.")
flags.DEFINE_integer("examples", None, "Examples to cache; default: train.steps x batch size.",
                     lower_bound=1)
flags.DEFINE_integer("seed", None, "Augmentation seed; default: train.seed.")
flags.DEFINE_integer("examples_per_shard", 256, "Examples per TFRecord shard.", lower_bound=1)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    given = flags.FLAGS
    if not given.output:
        raise config.ConfigError("--output is required: the folder the cache is written to.")
    config.check_output_folder("--output", given.output)
    config.parse_flags_gin()
    from kdod.cache_teacher_lib import make_cache  # After flag parsing: TensorFlow loads slowly.

    manifest = make_cache(given.output, given.teacher_dir, given.examples, given.seed,
                          given.examples_per_shard)
    shown = ("examples", "image_size", "losses", "teacher_outputs", "seed")
    print(json.dumps({key: manifest[key] for key in shown}, indent=1))
    print(f"Wrote {given.output}; train with "
          f"--gin_param=\"DistillerConfig.teacher_cache = '{given.output}'\"")


if __name__ == "__main__":
    config.run(main)

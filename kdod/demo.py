r"""The main job on built-in data: synthetic plates -> a small detector -> COCO metrics.

    python -m kdod.demo [--model_dir=runs/demo]      (or: make demo)

1. Builds the quick synthetic plate set (about 30 s) and draws samples to
   <model_dir>/samples.png.
2. Trains the small student recipe (gin/student_small.gin, about 5 minutes on 2 cores);
   run again, it resumes or reuses the trained model.
3. Evaluates it on the test split and prints its COCO metrics, size and latency.
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags

from kdod import config

flags.DEFINE_string("recipe", "student_small.gin", "gin recipe of the detector to train.")

DEMO_DIR = "runs/demo"


def _save_samples(path: Path, count: int = 8) -> None:
    """A grid of training images with their boxes and plate text."""
    import tensorflow_datasets as tfds
    from PIL import Image

    import tfds_builders  # noqa: F401
    from kdod import visualize

    dataset = tfds.load("synthetic_plates/quick", split=f"train[:{count}]")
    pictures = [visualize.draw_boxes(e["image"], e["objects"]["bbox"],
                                     [t.decode() for t in e["objects"]["text"]])
                for e in tfds.as_numpy(dataset)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(visualize.image_grid(pictures)).save(path)


def _latency_ms(model, repeats: int = 20) -> float:
    import tensorflow as tf

    detect = tf.function(model.detect)
    image = tf.zeros([1, model.image_size, model.image_size, 3], tf.uint8)
    detect(image)
    start = time.perf_counter()
    for _ in range(repeats):
        detect(image)
    return (time.perf_counter() - start) / repeats * 1000


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    model_dir = Path(flags.FLAGS.model_dir or DEMO_DIR)
    config.parse_gin([flags.FLAGS.recipe, *flags.FLAGS.gin_file], flags.FLAGS.gin_param)
    from kdod import eval_lib, train_lib

    print(f"[1/3] Synthetic plates: building (first run only) and drawing samples ...")
    _save_samples(model_dir / "samples.png")
    print(f"      samples with boxes and plate text: {model_dir / 'samples.png'}")

    print(f"[2/3] Training {flags.FLAGS.recipe} into {model_dir / 'detector'} ...")
    start = time.perf_counter()
    train_lib.train(str(model_dir / "detector"))
    print(f"      done in {time.perf_counter() - start:.0f} s")

    print("[3/3] COCO evaluation on the synthetic test split ...")
    metrics = eval_lib.evaluate(str(model_dir / "detector"), split="test", num_visualizations=8)
    model = eval_lib.load_trained(str(model_dir / "detector"))
    rows = [("AP (0.50:0.95)", f"{metrics['AP']:.3f}"), ("AP50", f"{metrics['AP50']:.3f}"),
            ("AP75", f"{metrics['AP75']:.3f}"), ("AP small", f"{metrics['AP_small']:.3f}"),
            ("AR@100", f"{metrics['AR100']:.3f}"),
            ("parameters", f"{model.count_params():,}"),
            ("CPU latency, batch 1", f"{_latency_ms(model):.1f} ms")]
    print("\n" + "\n".join(f"  {name:<22}{value:>12}" for name, value in rows))
    print(f"\nPictures (green: truth, red: detections): {model_dir}/detector/eval_test/"
          f"visualizations\nTensorBoard: tensorboard --logdir {model_dir}/detector/logs")


if __name__ == "__main__":
    config.run(main)

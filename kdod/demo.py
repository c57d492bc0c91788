r"""The main job on built-in data: teacher, student alone, distilled student, compared.

    python -m kdod.demo [--model_dir=runs/demo]      (or: make demo)

1. Builds the quick synthetic plate set (about 30 s, first run only) and draws samples.
2. Trains a teacher (gin/teacher_small.gin), the student alone (gin/student_small.gin) and the
   student distilled from the teacher (--distill_recipe, gin/combined_ssd.gin by default),
   with the shorter schedules below so the whole story fits in 15 minutes on 2 cores
   (13.7 min measured on an idle 2-core CPU).
3. Evaluates all three on the synthetic test split and prints a table (COCO AP, AP50,
   parameters, batch-1 CPU latency); writes report.md and report.png (AP against latency).

Run again, it reuses finished stages (delete <model_dir> to start over).
"""

from __future__ import annotations

import time
from pathlib import Path

from absl import flags

from kdod import config

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.

flags.DEFINE_string("distill_recipe", "combined_ssd.gin", "gin recipe of the distilled student.")
flags.DEFINE_integer("teacher_steps", 700, "Training steps of the teacher.")
flags.DEFINE_integer("student_steps", 200, "Training steps of each student.")

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


def run_stage(name: str, gin_files: list[str], bindings: list[str], model_dir: Path) -> dict:
    """Trains (or resumes) and evaluates one model; returns its row of the table."""
    from kdod.experiment import train_and_evaluate

    print(f"\n== {name}: {' + '.join(gin_files)} -> {model_dir}")
    return {"model": name, **train_and_evaluate(gin_files, bindings, model_dir,
                                                num_visualizations=4)}


def write_report(rows: list[dict], folder: Path) -> None:
    """report.md (the table) and report.png (COCO AP against latency)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["| model | AP | AP50 | parameters | latency (ms, batch 1, CPU) | training (min) |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['parameters']:,} | "
              f"{r['latency_ms']:.1f} | {r['train_minutes']:.1f} |" for r in rows]
    (folder / "report.md").write_text("# kdod demo on synthetic plates\n\n" + "\n".join(lines)
                                      + "\n\n![AP against latency](report.png)\n")
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for row in rows:
        axes.scatter(row["latency_ms"], row["AP"], s=40)
        axes.annotate(row["model"], (row["latency_ms"], row["AP"]), textcoords="offset points",
                      xytext=(5, 5))
    axes.set_xlabel("batch-1 CPU latency (ms)")
    axes.set_ylabel("COCO AP (synthetic test)")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(folder / "report.png", dpi=120)
    plt.close(figure)


def print_table(rows: list[dict]) -> None:
    header = f"{'model':<18}{'AP':>7}{'AP50':>7}{'params':>12}{'latency':>11}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['model']:<18}{r['AP']:>7.3f}{r['AP50']:>7.3f}{r['parameters']:>12,}"
              f"{r['latency_ms']:>8.1f} ms")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    folder = Path(flags.FLAGS.model_dir or DEMO_DIR)
    config.parse_gin([flags.FLAGS.distill_recipe])  # Fail early on a typo in the recipe name.
    print("Synthetic plates: building (first run only) and drawing samples ...")
    _save_samples(folder / "samples.png")
    print(f"  samples with boxes and plate text: {folder / 'samples.png'}")
    teacher_dir = folder / "teacher"
    steps = flags.FLAGS.student_steps
    stages = [
        ("teacher", ["teacher_small.gin"], [f"train.steps = {flags.FLAGS.teacher_steps}"],
         teacher_dir),
        ("student alone", ["student_small.gin"], [f"train.steps = {steps}"],
         folder / "student"),
        ("student distilled", [flags.FLAGS.distill_recipe],
         [f"train.steps = {steps}", f"DistillerConfig.teacher_dir = '{teacher_dir}'"],
         folder / "distilled"),
    ]
    start = time.perf_counter()
    rows = [run_stage(*stage) for stage in stages]
    write_report(rows, folder)
    print_table(rows)
    print(f"\nTotal {(time.perf_counter() - start) / 60:.1f} min. Report: {folder / 'report.md'}"
          f" (plot: report.png). Pictures: {folder}/*/eval_test/visualizations. "
          f"TensorBoard: tensorboard --logdir {folder}")


if __name__ == "__main__":
    config.run(main)

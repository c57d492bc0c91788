r"""Writes a split of one of kdod's data sets as TF Object Detection API TFRecords.

    python -m kdod.to_tfrecord --dataset=car_plates --split=train --output=records/train.record

Writes `label_map.pbtxt` beside the output. Images keep the bytes the data set stores
(JPEG stays JPEG, PNG stays PNG): nothing is re-encoded. Read the records back in kdod with
the source name "tfrecord:records/train.record".
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from kdod import config

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.

flags.DEFINE_string("dataset", None, "TFDS name of the data set, e.g. car_plates or "
                    "synthetic_plates/quick.")
flags.DEFINE_string("split", "train", "Split to write, e.g. train, test, train[:50%].")
flags.DEFINE_string("output", None, "TFRecord file to write, e.g. records/train.record.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default: TFDS's own).")
flags.DEFINE_string("manual_dir", None, "TFDS manual folder holding the Kaggle archive "
                    "(default: <data_dir>/downloads/manual).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS.dataset or not flags.FLAGS.output:
        raise config.ConfigError("--dataset and --output are required, e.g. "
                                 "--dataset=car_plates --output=records/train.record")
    output = Path(flags.FLAGS.output)
    if output.is_dir():
        raise config.ConfigError(f"--output={output} is a folder; give the record file to write.")
    config.check_output_folder("--output", output.parent)
    count, label_map = convert(flags.FLAGS.dataset, flags.FLAGS.split, output,
                               flags.FLAGS.data_dir, flags.FLAGS.manual_dir)
    print(f"Wrote {count} examples to {output} and the label map {label_map}.")


def convert(dataset: str, split: str, output: Path, data_dir: str | None = None,
            manual_dir: str | None = None) -> tuple[int, Path]:
    """Writes `dataset`'s `split` to `output` and label_map.pbtxt beside it."""
    import tensorflow_datasets as tfds
    from tqdm import tqdm

    import tfds_builders  # noqa: F401  Registers kdod's builders with TFDS.
    from kdod.data import pipeline, tfod

    with pipeline.tfds_errors(dataset, split):
        builder = tfds.builder(dataset, data_dir=data_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
        records = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
        total = builder.info.splits[split].num_examples
    pipeline.check_tfds_files(builder.info, split)
    names = builder.info.features["objects"]["label"].names
    examples = (_as_tfod_input(example) for example in
                tqdm(tfds.as_numpy(records), total=total, desc=f"{dataset} {split}", unit="img"))
    count = tfod.write_tfod_records(examples, output, names)
    return count, tfod.write_label_map(output.parent / tfod.LABEL_MAP_NAME, names)


def _as_tfod_input(example: dict) -> dict:
    return {"image": example["image"], "boxes": example["objects"]["bbox"],
            "labels": example["objects"]["label"], "filename": example["image/filename"]}


if __name__ == "__main__":
    config.run(main)

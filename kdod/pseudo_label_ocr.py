r"""Labels real plate crops for kdod's recognizer with the big OCR engines' readings: pseudo-labels.

    python -m kdod.pseudo_label_ocr \
        --source="tfrecord:../shared/data/car-plates-train-records/train.record" --split=train \
        --engines=easyocr,rapidocr,tesseract --output=runs/pseudo_real
    python -m kdod.train_ocr --gin_file=gin/ocr/plate_ctc_real.gin --model_dir=runs/plate_ctc_real

Cuts every ground-truth plate box of a detection source as kdod.recognize cuts a detection,
reads it with each engine and keeps a reading as the crop's label where at least --min_agree
engines read the same text, or else where one engine read a valid plate text with a score of at
least --min_score. Writes <output>/crops/*.png, labels.csv (the kept crops, the filename,
plate_text CSV that train_ocr.text_csv reads), readings.csv (every crop: each engine's text and
score, the kept text, the reason), summary.json and, with rapidocr among the engines,
soft_labels.npz (RapidOCR's distribution over A-Z0-9 of each kept character, where its reading
of a row holds the label: what train_ocr.soft_labels distils, kdod/ocr/soft_labels.py).
Pseudo-label the training split only: crops of the images a recognizer is measured on must not
train it.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags

from kdod import config

flags.adopt_module_key_flags(config)  # --help lists --gin_file, --gin_param, --model_dir.

flags.DEFINE_string("source", None, "Detection data with plate boxes, as input_pipeline.sources "
                    "names it: 'tfrecord:records/train.record' (TF OD API records) or a TFDS "
                    "name such as 'car_plates,manual_dir=/data/car-plate-detection'.")
flags.DEFINE_string("split", "train", "Split of --source to read, e.g. train, train[:50%].")
flags.DEFINE_list("engines", ["easyocr", "rapidocr", "tesseract"],
                  "OCR engines (names in kdod.OCR_BACKENDS), comma-separated.")
flags.DEFINE_string("output", None, "Folder for crops/, labels.csv, readings.csv and "
                    "summary.json, e.g. runs/pseudo_real.")
flags.DEFINE_integer("min_agree", 2, "Keep a text at least this many engines read.",
                     lower_bound=1)
# A text kept on one engine's word has no second opinion, and a wrong label teaches the
# recognizer wrong characters. Checked by eye on 43 crops of the car_plates training records,
# RapidOCR's readings scoring 0.95 or more were right 11 times in 12 (the miss: one line of a
# two-line plate), those from 0.90 to 0.95 5 in 6 (a registration without its first letter),
# those under 0.90 mostly wrong. Tesseract often scores 0 on real crops it reads right.
flags.DEFINE_float("min_score", 0.95, "Failing agreement, keep a text one engine read with at "
                   "least this score.", lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_string("formats", None, "Plate formats for the engines' correction, as in "
                    "kdod.recognize ('us', 'uk+us' or 'LLDDLLL,DLLLDDD'); default: none.")
flags.DEFINE_integer("max_images", None, "Read the plates of at most this many images.",
                     lower_bound=1)
flags.DEFINE_string("data_dir", None, "TFDS data_dir for a TFDS --source (default: TFDS's own).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise config.ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    given = flags.FLAGS
    if not given.source or not given.output:
        raise config.ConfigError(
            "--source and --output are required, e.g. --source=tfrecord:records/train.record "
            "--output=runs/pseudo_real")
    config.check_output_folder("--output", given.output)
    config.parse_flags_gin()  # e.g. --gin_param="easyocr.model_dir='/weights'"
    from kdod import files  # After flag parsing: TensorFlow loads slowly.
    from kdod.ocr import pseudo_labels, soft_labels

    engines = pseudo_labels.build_engines(given.engines, given.formats)
    summary = pseudo_labels.pseudo_label(
        given.source, given.split, engines, given.output, min_agree=given.min_agree,
        min_score=given.min_score, max_images=given.max_images, data_dir=given.data_dir)
    if "rapidocr" in engines:  # its CTC frames give each kept character's distribution
        summary.update(soft_labels.write_soft_labels(given.output, engines["rapidocr"]))
        files.write_json(Path(given.output) / "summary.json", summary)
    kept, left_out = summary["kept"], summary["left_out"]
    print(f"{sum(kept.values())} of {summary['plates']} plates of {summary['images']} images "
          f"labelled ({kept['agree']} by agreement, {kept['confident']} by confidence; "
          f"{left_out['disagree']} disagreed, {left_out['empty']} unread); "
          f"{sum(summary['skipped_boxes'].values())} boxes skipped. "
          f"Train on {Path(given.output) / 'labels.csv'} (train_ocr.text_csv)"
          + (f", with {summary['soft_labelled']} soft labels in "
             f"{Path(given.output) / soft_labels.SOFT_LABELS_FILE} (train_ocr.soft_labels)."
             if "soft_labelled" in summary else "."))


if __name__ == "__main__":
    config.run(main)

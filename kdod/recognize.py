r"""Reads licence plates in images, folders and videos with a trained detector and an OCR engine.

    python -m kdod.recognize --model_dir=runs/tiny --ocr=easyocr photos/ car.jpg [clip.mp4]
    python -m kdod.recognize --model_dir=runs/tiny --ocr=plate_ctc --ocr_model=runs/plate_ctc x/

Writes <output_dir>/plates.jsonl, one JSON line per plate
({"file", "frame", "box": [xmin, ymin, xmax, ymax] pixels, "score", "text", "text_score"}), and
an annotated picture per image (or video frame) with each box and its text. Video files need
OpenCV (installed with any OCR extra). An unreadable file is reported and skipped; when no
file can be read, the exit status is 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from absl import flags
from PIL import Image, UnidentifiedImageError
from PIL.Image import DecompressionBombError

from kdod import config
from kdod.errors import KdodError

flags.adopt_module_key_flags(config)

flags.DEFINE_string("ocr", "easyocr", "OCR backend: a name in kdod.OCR_BACKENDS.")
flags.DEFINE_string("ocr_model", None, "With --ocr=plate_ctc: the recognizer, a run folder of "
                    "python -m kdod.train_ocr or its plate_ctc.tflite.")
flags.DEFINE_string("formats", None, "Plate formats for correction: a region of "
                    "kdod.ocr.plate_text.PLATE_FORMATS ('us', 'uk+us') or patterns "
                    "like 'LLDDLLL,DLLLDDD' (L letter, D digit).")
flags.DEFINE_string("output_dir", "recognized", "Folder for plates.jsonl and annotated images.")
flags.DEFINE_float("min_score", 0.3, "Detections below this score are ignored.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_integer("video_stride", 10, "Read every n-th frame of a video.", lower_bound=1)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}


def expand_paths(paths: list[str]) -> list[Path]:
    """Files given, and the image/video files inside given folders (sorted)."""
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*")
                                if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES))
        elif path.exists():
            files.append(path)
        else:
            raise config.ConfigError(f"{name} does not exist.")
    return files


def load_image(path: Path) -> np.ndarray:
    """uint8 RGB pixels; raises OSError/UnidentifiedImageError for unreadable files."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def video_frames(path: Path, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB pixels) of every `stride`-th frame."""
    try:
        import cv2
    except ImportError:
        raise OSError("reading videos needs OpenCV: pip install opencv-python-headless") from None
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError("OpenCV cannot open it as a video")
    try:
        number = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            if number % stride == 0:
                yield number, frame[..., ::-1]
            number += 1
    finally:
        capture.release()


def frames_of(path: Path, stride: int) -> Iterator[tuple[int | None, np.ndarray]]:
    """An image as one frame (number None), or a video's sampled frames."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        yield from video_frames(path, stride)
    else:
        yield None, load_image(path)


def annotate(image: np.ndarray, plates) -> np.ndarray:
    from kdod import visualize

    boxes = np.array([plate.box for plate in plates], np.float32).reshape(-1, 4)
    captions = [f"{plate.text or '?'} ({plate.text_score:.2f})" for plate in plates]
    return visualize.draw_boxes(image, boxes, captions, visualize.PREDICTION)


def picture_stems(files: list[Path]) -> dict[Path, str]:
    """The stem of each file's annotated pictures: its own, numbered when an earlier file has
    it (a/car.png, b/car.jpg: car, car_2), so no picture overwrites another."""
    stems: dict[Path, str] = {}
    taken: set[str] = set()
    for path in dict.fromkeys(files):  # A file given twice keeps one stem.
        stem, number = path.stem, 1
        while stem in taken:
            number += 1
            stem = f"{path.stem}_{number}"
        stems[path] = stem
        taken.add(stem)
    return stems


def picture_name(stem: str, frame: int | None) -> str:
    return f"{stem}.png" if frame is None else f"{stem}_frame{frame:06d}.png"


def recognize_files(recognizer, files: list[Path], output_dir: Path,
                    stride: int = 10) -> tuple[int, list[str]]:
    """Writes plates.jsonl and annotated pictures; returns (plates written, skipped reports)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    stems = picture_stems(files)
    with open(output_dir / "plates.jsonl", "w", encoding="utf-8") as lines:
        for path in files:
            try:
                for frame, image in frames_of(path, stride):
                    plates = recognizer([image])[0]
                    for plate in plates:
                        record = {"file": str(path), "frame": frame,
                                  "box": plate.box_pixels(image.shape), "score": plate.score,
                                  "text": plate.text, "text_score": plate.text_score}
                        lines.write(json.dumps(record) + "\n")
                        written += 1
                    Image.fromarray(annotate(image, plates)).save(
                        output_dir / picture_name(stems[path], frame))
            except (OSError, UnidentifiedImageError, ValueError, DecompressionBombError) as error:
                report = f"skipped {path}: {type(error).__name__}: {error}"
                print(report, file=sys.stderr)
                skipped.append(report)
    return written, skipped


def main(argv: list[str]) -> None:
    model_dir = flags.FLAGS.model_dir
    if not model_dir:
        raise config.ConfigError("--model_dir is required: the directory of a training run.")
    if len(argv) < 2:
        raise config.ConfigError("Give images, folders or videos to read.")
    files = expand_paths(argv[1:])
    if not files:
        raise config.ConfigError(f"No image or video files in {' '.join(argv[1:])} (looked for "
                                 f"{', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))}).")
    config.check_output_folder("--output_dir", flags.FLAGS.output_dir)
    config.parse_gin(config.run_gin_files(model_dir), flags.FLAGS.gin_param)
    from kdod import eval_lib  # After flag parsing: TensorFlow loads slowly.
    from kdod.ocr import anpr

    ocr = anpr.build_ocr(flags.FLAGS.ocr, flags.FLAGS.formats, flags.FLAGS.ocr_model)
    recognizer = anpr.PlateRecognizer(eval_lib.load_trained(model_dir), ocr,
                                      min_score=flags.FLAGS.min_score)
    output_dir = Path(flags.FLAGS.output_dir)
    written, skipped = recognize_files(recognizer, files, output_dir, flags.FLAGS.video_stride)
    print(f"{written} plates from {len(files) - len(skipped)} files written to "
          f"{output_dir / 'plates.jsonl'}; {len(skipped)} skipped.")
    if len(skipped) == len(files):
        raise KdodError(f"None of the {len(files)} files could be read (each is reported "
                        "above).")


if __name__ == "__main__":
    config.run(main)

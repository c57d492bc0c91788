r"""kdod's own plate recognizer as an OCR backend: ``plate_ctc``, a TFLite model trained here.

    python -m kdod.train_ocr --gin_file=gin/ocr/plate_ctc.gin --model_dir=runs/plate_ctc
    python -m kdod.evaluate --model_dir=runs/tiny --ocr=plate_ctc --ocr_model=runs/plate_ctc
    python -m kdod.recognize --model_dir=runs/tiny --ocr=plate_ctc --ocr_model=runs/plate_ctc x.jpg
    gin:  plate_ctc.model = 'runs/plate_ctc'

The model is a training run's folder (its ``plate_ctc.tflite``) or a ``.tflite`` file that
`kdod.train_ocr` wrote. Each crop is resized to the model's input (`fit_crop`), read as CTC
frames and decoded greedily (`kdod.ocr.ctc`): one line, the registration, so no line selection;
the formats of `ReadOptions` still correct look-alike characters when given. Nothing is ever
downloaded: the weights come from the project's own training command.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from kdod.ocr import base, ctc
from kdod.ocr.cropping import CropPreparation
from kdod.registry import register_ocr

TFLITE_NAME = "plate_ctc.tflite"  # in a training run's folder
# The network was trained on crops as cut: no trimming, upscaling, contrast or padding.
AS_CUT = CropPreparation(trim=0.0, min_height=1, contrast=False, pad=0.0)
TRAIN_COMMAND = ("python -m kdod.train_ocr --gin_file=gin/ocr/plate_ctc.gin "
                 "--model_dir=runs/plate_ctc")


def fit_crop(crop: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [height, width, 3]: the crop stretched to the recognizer's input (RGB)."""
    image = Image.fromarray(np.ascontiguousarray(np.asarray(crop, np.uint8)[..., :3]))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))


def model_file(model: str | Path | None) -> Path:
    """The .tflite file of `model` (a file, or a training run's folder); an OcrSetupError
    saying how to train one when there is none."""
    if model is None:
        raise base.OcrSetupError(
            f"OCR engine 'plate_ctc' needs a trained recognizer: pass --ocr_model=<training run "
            f"folder or .tflite> (or bind plate_ctc.model in gin). Train one with: "
            f"{TRAIN_COMMAND}")
    path = Path(model)
    if path.is_dir():
        path = path / TFLITE_NAME
    if not path.is_file():
        raise base.OcrSetupError(f"No plate recognizer at {path}: train one with "
                                 f"{TRAIN_COMMAND} (it writes {TFLITE_NAME} into the run).")
    return path


@register_ocr("plate_ctc")
class PlateCtcBackend(base.LineReader):
    """A trained kdod recognizer (TFLite) reading each crop as one line.

    Args:
        model: a training run's folder or its .tflite file (see `model_file`).
        num_threads: interpreter threads (1: the speed target is per CPU core).
        options: see base.ReadOptions (formats correct look-alikes; selection is trivial).
        preparation: see cropping.CropPreparation; default: the crop as cut (`AS_CUT`).
    """

    def __init__(self, model: str | None = None, num_threads: int = 1,
                 options: base.ReadOptions | None = None,
                 preparation: CropPreparation | None = None):
        super().__init__(options, preparation or AS_CUT)
        self.path = model_file(model)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # TensorFlow's own, deprecated, does the same.
            from tensorflow.lite import Interpreter
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        except (ValueError, RuntimeError) as error:
            raise base.OcrSetupError(f"{self.path} is not a TFLite model kdod can run: {error}. "
                                     f"Train it again with {TRAIN_COMMAND}") from None
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        _, self.height, self.width, _ = (int(d) for d in self.input["shape"])

    def read_crop(self, crop: np.ndarray) -> tuple[str, float]:
        """The text of one crop, greedily decoded, and its score."""
        image = fit_crop(crop, self.height, self.width)[None].astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], image)
        self.interpreter.invoke()
        return ctc.greedy_decode(self.interpreter.get_tensor(self.output["index"])[0])

    def read_lines(self, crop: np.ndarray) -> list[base.TextLine]:
        text, score = self.read_crop(crop)
        box = (0.0, 0.0, float(crop.shape[1]), float(crop.shape[0]))
        return [base.TextLine(text, score, box)] if text else []

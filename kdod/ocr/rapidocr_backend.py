"""RapidOCR backend (rapidocr-onnxruntime: PaddleOCR's models on ONNX Runtime, shipped in the
wheel, so it runs offline).

RapidOCR's detector finds where text is; pieces on one row are merged (it splits plates into
overlapping pieces that, recognised apart, repeat characters), and each row's band is read by
the recogniser as one line. The registration is then selected among the rows (base.py).
Without any detection (or with ``detect_lines=False``) the recogniser reads the whole crop,
which on real US crops read 69% of plates exactly.
"""

from __future__ import annotations

import numpy as np

from kdod.ocr import base, cropping
from kdod.registry import register_ocr


@register_ocr("rapidocr")
class RapidOcrBackend(base.LineReader):
    """RapidOCR text detection for the rows, and recognition of each row's band.

    Args:
        detect_lines: find text rows first; False recognises the whole crop as one line.
        options, preparation: see base.ReadOptions and cropping.CropPreparation.
    """

    def __init__(self, detect_lines: bool = True, options: base.ReadOptions | None = None,
                 preparation: cropping.CropPreparation | None = None):
        super().__init__(options, preparation)
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as error:
            hint = base.install_hint("rapidocr", "rapidocr")
            raise base.OcrSetupError(f"{hint} ({error})") from None
        self.engine = RapidOCR()
        self.detect_lines = detect_lines
        self._classes = None  # the recogniser's classes in A-Z0-9 (character_readings)

    def rows(self, crop: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Boxes of the text rows RapidOCR's detector finds."""
        boxes, _ = self.engine(_bgr(crop), use_cls=False, use_rec=False)
        pieces = [base.TextLine("", 1.0, base.polygon_bounds(box)) for box in boxes or []]
        return [row.box for row in base.group_rows(pieces)]

    def read_band(self, band: np.ndarray) -> tuple[str, float]:
        results, _ = self.engine(_bgr(band), use_det=False, use_cls=False, use_rec=True)
        text, score = results[0] if results else ("", 0.0)
        return text, float(score)

    def read_lines(self, crop: np.ndarray) -> list[base.TextLine]:
        return base.read_bands(crop, self.rows(crop) if self.detect_lines else [], self.read_band)

    def frame_probabilities(self, band: np.ndarray) -> np.ndarray:
        """The recogniser's CTC frames of one band: probabilities [T, len(characters)]."""
        recogniser = self.engine.text_rec
        _, height, width = recogniser.rec_image_shape
        ratio = max(width / height, band.shape[1] / band.shape[0])
        batch = recogniser.resize_norm_img(_bgr(band), ratio)[None].astype(np.float32)
        return np.asarray(recogniser.session(batch)[0][0], np.float64)

    def character_readings(self, crop: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Each text row of a crop and the whole crop read as one line, with each character's
        distribution over A-Z0-9 (`soft_labels.project`): what soft labels are taken from."""
        from kdod.ocr import soft_labels

        if self._classes is None:
            self._classes = soft_labels.alphabet_classes(
                self.engine.text_rec.postprocess_op.character)
        prepared = cropping.prepare_crop(crop, self.preparation)
        whole = (0.0, 0.0, float(prepared.shape[1]), float(prepared.shape[0]))
        boxes = [*(self.rows(prepared) if self.detect_lines else []), whole]
        return [soft_labels.project(self.frame_probabilities(cropping.cut_band(prepared, box)),
                                    self._classes) for box in boxes]


def _bgr(image: np.ndarray) -> np.ndarray:
    """RapidOCR takes arrays in OpenCV's BGR order."""
    return np.ascontiguousarray(image[..., ::-1])

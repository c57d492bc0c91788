"""OCR backends behind one protocol (`OcrBackend.read(crops) -> [PlateRead]`), crop preparation
(`cropping`), plate-text rules (`plate_text`) and the detector + OCR pipeline (`anpr`).

Importing this package registers the backends `easyocr`, `rapidocr`, `tesseract` and
`plate_ctc` (kdod's own recognizer, `recognizer` + `ctc`, trained by `kdod.train_ocr`) by name
without importing their engines: an engine loads when its backend is built, so a missing
engine disables that backend alone.
"""

from kdod.ocr import (  # noqa: F401
    easyocr_backend,
    plate_ctc,
    rapidocr_backend,
    tesseract_backend,
)
from kdod.ocr.base import LineReader, OcrBackend, PlateRead, ReadOptions, TextLine
from kdod.ocr.cropping import CropPreparation

__all__ = ["CropPreparation", "LineReader", "OcrBackend", "PlateRead", "ReadOptions", "TextLine"]

"""OCR backends behind one protocol (`OcrBackend.read(crops) -> [PlateRead]`), plate-text
post-processing and crop preparation.

Importing this package registers the core backend (`easyocr`) by name without importing its
engine: engines load when a backend is built. `kdod_plugins` adds `rapidocr` and `tesseract`.
"""

from kdod.ocr import easyocr_backend  # noqa: F401  Registers "easyocr".
from kdod.ocr.base import LineReader, OcrBackend, PlateRead, ReadOptions, TextLine
from kdod.ocr.postprocess import CropPreparation

__all__ = ["CropPreparation", "LineReader", "OcrBackend", "PlateRead", "ReadOptions", "TextLine"]

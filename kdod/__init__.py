"""kdod: knowledge distillation of object detectors, proven on licence plates.

Importing kdod is cheap; TensorFlow and the components load on first use.
"""

from kdod.registry import (
    BACKBONES,
    LOSSES,
    NECKS,
    OCR_BACKENDS,
    REGISTRIES,
    TEACHERS,
    Registry,
    UnknownComponentError,
    load_plugins,
    register_backbone,
    register_loss,
    register_neck,
    register_ocr,
    register_teacher,
)

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "LOSSES",
    "NECKS",
    "OCR_BACKENDS",
    "REGISTRIES",
    "TEACHERS",
    "Registry",
    "UnknownComponentError",
    "load_plugins",
    "register_backbone",
    "register_loss",
    "register_neck",
    "register_ocr",
    "register_teacher",
]

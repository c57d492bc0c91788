"""Annotations: a VOC XML file read into its size and boxes, and the boxes made TFDS boxes.

XML that cannot be trusted (unparsable, a DTD or entity declaration, a missing or non-numeric
field) skips its pair; an unknown class name stops preparation. Boxes are clipped to the image
and normalized; a box with no area left inside it is dropped. Both are counted and logged.
"""

from __future__ import annotations

import dataclasses
import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import numpy as np

from kdod.errors import KdodError
from tfds_builders.voc.kaggle import KaggleSource
from tfds_builders.voc.report import PrepReport, SkipExample

logger = logging.getLogger(__name__)


class UnknownClassError(KdodError):
    """An annotation names a class the builder does not know."""


@dataclasses.dataclass
class VocAnnotation:
    size: tuple[int, int] | None  # (width, height) as the XML states it, when it does
    boxes: list[tuple[str, float, float, float, float]]  # name, xmin, ymin, xmax, ymax


def parse_annotation(data: bytes, name: str) -> VocAnnotation:
    """Reads a VOC XML file; SkipExample("malformed_xml") when it cannot be trusted."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SkipExample("malformed_xml", f"{name}: a DTD or entity declaration (refused)")
    try:
        root = ET.fromstring(data)
        size = _parse_size(root)
        boxes = [_parse_object(element) for element in root.iter("object")]
    except (ET.ParseError, ValueError, TypeError, AttributeError) as error:
        raise SkipExample("malformed_xml", f"{name}: {error}") from None
    return VocAnnotation(size, boxes)


def _parse_size(root: ET.Element) -> tuple[int, int] | None:
    width, height = root.findtext("size/width"), root.findtext("size/height")
    if width is None or height is None or int(width) <= 0 or int(height) <= 0:
        return None  # Some tools write no size or zeros: the pixels decide.
    return int(width), int(height)


def _parse_object(element: ET.Element) -> tuple[str, float, float, float, float]:
    name = element.findtext("name")
    box = element.find("bndbox")
    if name is None or box is None:
        raise ValueError("an <object> without <name> or <bndbox>")
    return (name.strip(), *(float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax")))


def check_class_names(annotation: VocAnnotation, name: str, source: KaggleSource) -> None:
    """UnknownClassError when a box's class is not one of the source's plate names."""
    for class_name, *_ in annotation.boxes:
        if class_name not in source.class_names:
            raise UnknownClassError(
                f"{name}: unknown class {class_name!r}; known: {', '.join(source.class_names)} "
                "(all mean 'plate'). Add it to the builder's SOURCE.class_names if it is a plate.")


def normalized_boxes(pixel_boxes: Sequence[Sequence[float]], width: int, height: int,
                     name: str, report: PrepReport) -> np.ndarray:
    """[N, 4] float32 ymin, xmin, ymax, xmax in [0, 1]; clips and drops with counts."""
    kept = []
    for xmin, ymin, xmax, ymax in pixel_boxes:
        clipped = (min(max(xmin, 0.0), width), min(max(ymin, 0.0), height),
                   min(max(xmax, 0.0), width), min(max(ymax, 0.0), height))
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            report.add("boxes_dropped")
            logger.warning("%s: %s: dropped box %s (no area inside the %dx%d image)",
                           report.dataset, name, (xmin, ymin, xmax, ymax), width, height)
            continue
        if clipped != (xmin, ymin, xmax, ymax):
            report.add("boxes_clipped")
            logger.warning("%s: %s: clipped box %s to the %dx%d image", report.dataset, name,
                           (xmin, ymin, xmax, ymax), width, height)
        x0, y0, x1, y1 = clipped
        kept.append((y0 / height, x0 / width, y1 / height, x1 / width))
    return np.asarray(kept, dtype=np.float32).reshape(-1, 4)

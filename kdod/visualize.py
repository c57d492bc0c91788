"""Drawing boxes and captions on images (demo samples, evaluation pictures, TensorBoard)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

GROUND_TRUTH = (0, 220, 0)
PREDICTION = (255, 40, 40)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, captions: Sequence[str] = (),
               colour: tuple[int, int, int] = GROUND_TRUTH, width: int = 2) -> np.ndarray:
    """Returns a copy of `image` (uint8 HxWx3) with normalized boxes and optional captions."""
    picture = Image.fromarray(np.asarray(image, np.uint8))
    draw = ImageDraw.Draw(picture)
    height, width_px = picture.height, picture.width
    for i, (ymin, xmin, ymax, xmax) in enumerate(np.asarray(boxes, np.float32).reshape(-1, 4)):
        corners = (xmin * width_px, ymin * height, xmax * width_px, ymax * height)
        draw.rectangle(corners, outline=colour, width=width)
        if i < len(captions) and captions[i]:
            left, top, right, bottom = draw.textbbox((corners[0], corners[1]), captions[i])
            top_offset = bottom - top + 2
            label_box = (left, top - top_offset, right + 2, bottom - top_offset)
            draw.rectangle(label_box, fill=colour)
            draw.text((corners[0] + 1, corners[1] - top_offset), captions[i], fill=(0, 0, 0))
    return np.asarray(picture)


def image_grid(images: Sequence[np.ndarray], columns: int = 4, gap: int = 4) -> np.ndarray:
    """Tiles equally sized or smaller images into one uint8 picture, row by row."""
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    rows = -(-len(images) // columns)
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for i, im in enumerate(images):
        top, left = (i // columns) * (height + gap), (i % columns) * (width + gap)
        grid[top:top + im.shape[0], left:left + im.shape[1]] = im[..., :3]
    return grid

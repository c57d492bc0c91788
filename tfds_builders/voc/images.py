"""Images: checking that an archive's image is usable and choosing the bytes to store.

The pixel count is checked from the header before anything is decoded, then the image is
decoded fully so truncation and corruption show. An 8-bit RGB JPEG keeps its bytes; anything
else is converted to RGB and stored as lossless PNG.
"""

from __future__ import annotations

import io

from PIL import Image

from tfds_builders.voc.report import SkipExample

MAX_IMAGE_PIXELS = 50_000_000  # 50 MP; the largest real image (3720x2472) is 9.2 MP.


def load_image(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS
               ) -> tuple[bytes, tuple[int, int]]:
    """Validated RGB image bytes and (width, height); SkipExample when unusable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size  # From the header: nothing decoded yet.
            if width * height > max_pixels:
                raise SkipExample("image_too_large", f"{name}: {width}x{height} pixels, above "
                                  f"the limit of {max_pixels}")
            image.load()  # Decodes fully: truncation and corruption surface here.
            if image.format == "JPEG" and image.mode == "RGB":
                return data, (width, height)
            return _png_bytes(image.convert("RGB")), (width, height)
    except Image.DecompressionBombError as error:
        raise SkipExample("image_too_large", f"{name}: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's ways of saying "bad file"
        raise SkipExample("corrupt_image", f"{name}: {error}") from None


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()

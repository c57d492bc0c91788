"""Effects: the last stage, what the camera does to the composed scene, in capture order.

Lighting (brightness, contrast, a light gradient and sometimes a hard-edged shadow), sensor
noise, blur, then a JPEG round trip whose bytes are kept, so that decoding them gives back the
scene's pixels exactly. Each effect has a switch in ``SceneConfig`` and its strength in
``SceneConfig.camera``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from tfds_builders.synthetic_plates.config import CameraConfig, SceneConfig


def _lighting(rng: np.random.Generator, image: np.ndarray, camera: CameraConfig) -> np.ndarray:
    """Brightness/contrast, a linear light gradient and sometimes a hard-edged shadow."""
    height, width = image.shape[:2]
    gain = rng.uniform(*camera.gain)
    contrast = rng.uniform(*camera.contrast)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs * np.cos(angle) + ys * np.sin(angle)) / max(height, width)  # about -1.4..1.4
    light = 1.0 + rng.uniform(0, camera.max_light_gradient) * ramp
    if rng.random() < camera.shadow_probability:
        light = np.where(ramp > rng.uniform(-0.7, 0.7), light * rng.uniform(*camera.shadow_gain),
                         light)
    mean = image.mean()
    return ((image - mean) * contrast + mean) * gain * light[..., None]


def jpeg_round_trip(image: np.ndarray, quality: int) -> tuple[np.ndarray, bytes]:
    """The image as its JPEG encoding decodes, and that encoding."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    encoded = buffer.getvalue()
    return decode_jpeg(encoded), encoded


def decode_jpeg(encoded: bytes) -> np.ndarray:
    """uint8 RGB pixels of JPEG bytes, decoded as PIL does (libjpeg's accurate IDCT)."""
    with Image.open(io.BytesIO(encoded)) as decoded:
        return np.asarray(decoded.convert("RGB"))


def apply_effects(rng: np.random.Generator, image: np.ndarray,
                  config: SceneConfig) -> tuple[np.ndarray, bytes | None]:
    """Camera effects in capture order; returns the image and its JPEG bytes (if jpeg is on)."""
    camera = config.camera
    if config.lighting or config.noise:
        pixels = image.astype(np.float32)
        if config.lighting:
            pixels = _lighting(rng, pixels, camera)
        if config.noise:
            noise = rng.standard_normal(pixels.shape, dtype=np.float32)
            pixels += noise * rng.uniform(0, camera.max_noise_sigma)  # drawn after the noise
        image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    if config.blur:
        radius = (rng.uniform(0, camera.max_blur_radius)
                  if rng.random() < camera.blur_probability else 0.0)
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    if config.jpeg:
        return jpeg_round_trip(image, rng.integers(config.jpeg_quality[0],
                                                   config.jpeg_quality[1] + 1))
    return image, None

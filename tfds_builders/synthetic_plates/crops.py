"""Plate crops: one plate as a detector cuts it, with its registration, for plate recognizers.

    from tfds_builders.synthetic_plates.crops import CropConfig, render_crop
    image, text = render_crop(seed, CropConfig())          # uint8 [H, W, 3], e.g. "7BCD352"
    image, text = render_crop(seed, CropConfig().clean())  # flat, sharp, no camera effects

A seed and a ``CropConfig`` fix the crop. The scenes' renderer (``scene.py``) is not used and
not changed: its plates are drawn here too (layout "scene", `plates.plate_pixels`), beside
layouts closer to real US plates:

- "us": a state name above and a slogan below the registration, in varied plate and ink
  colours, sometimes a coloured band or arc, small stacked characters beside the registration
  (decoration, not part of the stored text) and a condensed or wide registration font;
- "eu": the blue band with stars and a country code;
- "two_line": the registration on two lines (stored top line first);
- vanity registrations (any 2-8 characters, no fixed format) in every layout but "scene".

Then, as a camera sees it: a licence-plate frame (often with a dealer's name) and bolts, the
plate warped by rotation and perspective onto a car-paint background with a margin, lighting,
glare, low resolution (plates 10-30 px high, upscaled again), blur, noise and a JPEG round trip.
The "scene" layout draws registrations as the scenes do (letters without I, O and Q,
`plates.LETTERS`); the others draw every letter, as vanity and many real plates have them, in
more fonts and stroke weights than the scenes. The stored text writes the letter O as the digit
0, as plate readers' ground truth does (the two are one glyph on many plates).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from kdod.errors import KdodError
from tfds_builders.synthetic_plates.config import DEFAULT_PLATE_FORMATS, PlateWords
from tfds_builders.synthetic_plates.effects import jpeg_round_trip
from tfds_builders.synthetic_plates.lettering import draw_text_line
from tfds_builders.synthetic_plates.placement import homography
from tfds_builders.synthetic_plates.plates import (
    DIGITS,
    LETTERS,
    PLATE_STYLES,
    REGISTRATION_FONTS,
    PlateSpec,
    frame_size,
    plate_pixels,
    random_registration,
    registration_of,
)
from tfds_builders.synthetic_plates.sampling import jitter_colour, pick

LAYOUTS = ("scene", "us", "eu", "two_line")
ALL_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# The scenes' registration fonts, twice as likely as the others: a regular sans, a mono, a thin
# sans (cmss10, made bolder by the stroke weights) and a bold serif.
CROP_FONTS = (*REGISTRATION_FONTS, *REGISTRATION_FONTS, "DejaVuSans.ttf", "DejaVuSansMono.ttf",
              "cmss10.ttf", "STIXGeneralBol.ttf")
# Common US layouts (CA, TX, NY, FL, ...), drawn with a space or a dash at times.
US_FORMATS = ("DLLLDDD", "LLL DDDD", "LLL-DDDD", "LLL DDD", "DDD LLL", "LL DDDDD", "DLL DDD",
              "LLLL DDD", "DDD-DDD", "LLDDDD")
TWO_LINE_FORMATS = (("LL", "DDDD"), ("DDD", "LLL"), ("LLL", "DDDD"), ("DL", "DDDDD"))
WORK_HEIGHT = 100  # pixels a plate is drawn at before the camera's resolution is applied
US_STATES = PlateWords().us_headers + (
    "MICHIGAN", "WASHINGTON", "New Jersey", "PENNSYLVANIA", "Massachusetts", "UTAH", "MAINE",
    "IDAHO", "KANSAS", "Tennessee", "N. CAROLINA", "Maryland", "WISCONSIN", "MINNESOTA")
US_SLOGANS = PlateWords().us_footers + (
    "GARDEN STATE", "Great Lakes State", "VACATIONLAND", "Evergreen State", "Famous Potatoes",
    "FIRST IN FLIGHT", "America's Dairyland", "10,000 LAKES", "Live Free or Die", "MY OLD KY",
    "In God We Trust", "Volunteer State", "COUNTY", "")
DEALERS = ("AUTO MALL", "TOYOTA OF CITY", "HONDA WORLD", "CAR CENTER", "FORD", "CHEVY",
           "MOTORS INC", "NISSAN", "LOVE MY DOG", "")
# (plate, ink) colours of US plates: mostly light plates with dark ink.
US_COLOURS = (((238, 240, 245), (20, 35, 110)), ((245, 245, 240), (15, 15, 15)),
              ((250, 246, 225), (120, 20, 25)), ((235, 240, 235), (20, 80, 40)),
              ((252, 215, 60), (20, 30, 90)), ((225, 235, 250), (25, 25, 25)),
              ((30, 40, 100), (245, 245, 240)), ((20, 20, 22), (240, 205, 70)),
              ((240, 236, 228), (90, 30, 110)))
CAR_PAINTS = ((235, 235, 232), (25, 25, 28), (175, 178, 182), (105, 108, 112), (160, 22, 28),
              (30, 60, 140), (40, 75, 55), (200, 185, 150), (230, 190, 40), (60, 62, 66))


@dataclasses.dataclass(frozen=True)
class CropConfig:
    """What a crop depends on besides its seed. Odds are per crop; ranges are drawn uniformly.

    Attributes:
        layouts: drawn uniformly (repeat a name to weight it); see the module docstring.
        vanity_probability: registrations of any 2-8 characters instead of a format.
        plate_height: pixels a plate is high in the crop, when not low-resolution.
        low_res_probability, low_res_height: plates this many pixels high, upscaled again.
        effects: the frame, bolts, warp and camera effects; False gives clean crops.
    """

    layouts: tuple[str, ...] = ("scene", "scene", "us", "us", "us", "eu", "two_line")
    scene_formats: tuple[str, ...] = DEFAULT_PLATE_FORMATS
    us_formats: tuple[str, ...] = US_FORMATS
    vanity_probability: float = 0.15
    stacked_probability: float = 0.25
    band_probability: float = 0.3
    squash: tuple[float, float] = (0.7, 1.15)  # registration width factor (condensed fonts)
    fonts: tuple[str, ...] = CROP_FONTS  # registration fonts of every layout but "scene"
    stroke_probability: float = 0.35  # registration strokes made bolder or thinner by a pixel
    margin: tuple[float, float] = (0.02, 0.14)  # background each side, fraction of the plate
    plate_height: tuple[int, int] = (24, 80)
    effects: bool = True
    frame_probability: float = 0.45
    bolt_probability: float = 0.5
    max_rotation_deg: float = 6.0
    max_corner_jitter: float = 0.06  # perspective, in plate heights
    low_res_probability: float = 0.35
    low_res_height: tuple[int, int] = (10, 30)
    gain: tuple[float, float] = (0.6, 1.3)
    contrast: tuple[float, float] = (0.6, 1.15)
    glare_probability: float = 0.2
    blur_probability: float = 0.5
    max_blur_radius: float = 1.2  # pixels of the crop
    max_noise_sigma: float = 7.0
    jpeg_quality: tuple[int, int] = (30, 95)

    def __post_init__(self):
        unknown = sorted(set(self.layouts) - set(LAYOUTS))
        if unknown or not self.layouts:
            raise KdodError(f"CropConfig.layouts: unknown {unknown or 'none given'}; choose "
                             f"from {', '.join(LAYOUTS)}.")

    def clean(self) -> CropConfig:
        """The same plates flat and sharp: no frame, bolts, warp or camera effects."""
        return dataclasses.replace(self, effects=False)


def render_crop(seed: int, config: CropConfig = CropConfig()) -> tuple[np.ndarray, str]:
    """One crop (uint8 RGB) and its registration (A-Z0-9); the same seed gives the same crop."""
    rng = np.random.default_rng(seed)
    layout = pick(rng, config.layouts)  # The first draw: see crop_layout.
    plate, drawn = _draw_plate(rng, layout, config)
    if config.effects:
        plate = _add_frame_and_bolts(rng, plate, config)
    image = _on_background(rng, plate, config)
    if config.effects:
        image = _camera(rng, image, plate.height, config)
    return image, registration_of(drawn).replace("O", "0")


def crop_layout(seed: int, config: CropConfig = CropConfig()) -> str:
    """The layout `render_crop(seed, config)` draws, without drawing the crop."""
    return pick(np.random.default_rng(seed), config.layouts)


# ---------------------------------------------------------------- the plate, flat


def vanity_registration(rng: np.random.Generator) -> str:
    """2-8 letters and digits in any order, sometimes with a space (no plate format)."""
    length = int(rng.integers(2, 9))
    chars = [pick(rng, ALL_LETTERS + DIGITS) for _ in range(length)]
    if length >= 4 and rng.random() < 0.3:
        chars.insert(int(rng.integers(1, length)), " ")
    return "".join(chars)


def _draw_plate(rng: np.random.Generator, layout: str,
                config: CropConfig) -> tuple[Image.Image, str]:
    """The flat plate (RGBA, WORK_HEIGHT high) and its drawn registration."""
    vanity = layout != "scene" and rng.random() < config.vanity_probability
    if layout == "scene":
        return _scene_plate(rng, config)
    if layout == "eu":
        drawn = vanity_registration(rng) if vanity else random_registration(
            rng, pick(rng, config.scene_formats), ALL_LETTERS)
        return _scene_plate(rng, config, style_name="eu", drawn=drawn,
                            font=pick(rng, config.fonts))
    if layout == "two_line":
        top, bottom = (random_registration(rng, part, ALL_LETTERS)
                       for part in pick(rng, TWO_LINE_FORMATS))
        return _two_line_plate(rng, top, bottom, pick(rng, config.fonts)), top + bottom
    drawn = vanity_registration(rng) if vanity else random_registration(
        rng, pick(rng, config.us_formats), ALL_LETTERS)
    return _us_plate(rng, drawn, config), drawn


def _scene_plate(rng: np.random.Generator, config: CropConfig, style_name: str | None = None,
                 drawn: str | None = None, font: str | None = None) -> tuple[Image.Image, str]:
    """A plate as the scenes draw it (`plates.plate_pixels`): their styles, formats and fonts
    (or `font`)."""
    style = (next(s for s in PLATE_STYLES if s.name == style_name) if style_name
             else pick(rng, PLATE_STYLES))
    drawn = drawn or random_registration(rng, pick(rng, config.scene_formats))
    words = PlateWords()
    header = pick(rng, words.us_headers if style.us_header else words.eu_country_codes)
    height = WORK_HEIGHT
    width = round(height * style.aspect * np.exp(0.08 * rng.standard_normal()))
    spec = PlateSpec(drawn, style, font or pick(rng, REGISTRATION_FONTS), width, height,
                     np.zeros((4, 2)), False, header, pick(rng, words.us_footers))
    return plate_pixels(spec, decorations=bool(rng.random() < 0.8)), drawn


def _blank_plate(background, border, width: int, height: int) -> tuple[Image.Image,
                                                                        ImageDraw.ImageDraw]:
    """A rounded plate with one transparent pixel of padding (as `plates.plate_pixels`)."""
    plate = Image.new("RGBA", (width + 2, height + 2), tuple(border) + (0,))
    draw = ImageDraw.Draw(plate)
    radius, line = frame_size(height)
    draw.rounded_rectangle((1, 1, width, height), radius=radius, fill=tuple(background) + (255,),
                           outline=tuple(border) + (255,), width=line)
    return plate, draw


def _squashed_text(rng: np.random.Generator, box, text: str, font: str, ink,
                   squash: tuple[float, float], background) -> Image.Image:
    """`text` fitted into `box` at a random width factor: condensed and wide plate fonts."""
    x0, y0, x1, y1 = box
    factor = rng.uniform(*squash)
    width, height = max(1, round((x1 - x0) / factor)), max(1, round(y1 - y0))
    layer = Image.new("RGBA", (width, height), tuple(background) + (0,))
    draw_text_line(ImageDraw.Draw(layer), (0, 0, width, height), text, font, tuple(ink) + (255,),
                   tracking_ratio=rng.uniform(0.04, 0.16))
    return layer.resize((round(x1 - x0), height), Image.Resampling.LANCZOS)


def _us_plate(rng: np.random.Generator, drawn: str, config: CropConfig) -> Image.Image:
    """State name above, slogan below, optional band or arc and stacked small characters."""
    height = WORK_HEIGHT
    width = round(height * rng.uniform(1.85, 2.15))
    background, ink = (jitter_colour(rng, colour, 8) for colour in pick(rng, US_COLOURS))
    plate, draw = _blank_plate(background, jitter_colour(rng, ink, 30), width, height)
    accent = jitter_colour(rng, pick(rng, ((170, 20, 30), (20, 40, 140), (20, 110, 60),
                                           (230, 150, 30))), 20)
    if rng.random() < config.band_probability:  # a coloured band or arc behind the words
        top = (rng.uniform(0.0, 0.12) if rng.random() < 0.6 else rng.uniform(0.78, 0.86)) * height
        if rng.random() < 0.5:  # kept off the registration, as real bands are
            draw.rectangle((3, top, width - 2, top + rng.uniform(0.08, 0.2) * height),
                           fill=accent + (255,))
        else:
            draw.arc((-0.2 * width, top, 1.2 * width, top + height), 180, 360,
                     fill=accent + (255,), width=max(2, round(0.05 * height)))
    header_ink = accent if rng.random() < 0.5 else ink
    header_font = pick(rng, ("DejaVuSerif-Bold.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans.ttf"))
    draw_text_line(draw, (0.15 * width, 0.06 * height, 0.85 * width, 0.06 * height
                          + rng.uniform(0.11, 0.19) * height),
                   pick(rng, US_STATES), header_font, tuple(header_ink) + (255,))
    slogan = pick(rng, US_SLOGANS)
    if slogan:
        draw_text_line(draw, (0.18 * width, 0.84 * height, 0.82 * width, 0.93 * height), slogan,
                       pick(rng, ("DejaVuSans.ttf", "DejaVuSerif-Italic.ttf")),
                       tuple(ink) + (255,))
    left, right = 0.06 * width, 0.94 * width
    if rng.random() < config.stacked_probability:  # e.g. a county or a sticker's letters
        stacked = "".join(pick(rng, LETTERS + DIGITS) for _ in range(2))
        side = rng.random() < 0.5
        x0 = left if side else 0.86 * width
        for row, char in enumerate(stacked):
            draw_text_line(draw, (x0, 0.36 * height + row * 0.2 * height, x0 + 0.08 * width,
                                  0.5 * height + row * 0.2 * height),
                           char, "DejaVuSans-Bold.ttf", tuple(ink) + (255,))
        left, right = (0.16 * width, right) if side else (left, 0.84 * width)
    top, bottom = rng.uniform(0.27, 0.33) * height, rng.uniform(0.76, 0.82) * height
    text = _squashed_text(rng, (left, top, right, bottom), drawn, pick(rng, config.fonts), ink,
                          config.squash, background)
    if rng.random() < config.stroke_probability:  # embossed characters, worn or heavy paint
        text = _stroke_weight(text, ink, bolder=bool(rng.random() < 0.6))
    plate.alpha_composite(text, (round(left) + 1, round(top) + 1))
    return plate


def _stroke_weight(text: Image.Image, ink, bolder: bool) -> Image.Image:
    """The text layer's strokes one pixel bolder (alpha dilated) or thinner (eroded), in ink."""
    alpha = text.getchannel("A").filter(ImageFilter.MaxFilter(3) if bolder
                                        else ImageFilter.MinFilter(3))
    weighted = Image.new("RGBA", text.size, tuple(ink) + (255,))
    weighted.putalpha(alpha)
    return weighted


def _two_line_plate(rng: np.random.Generator, top: str, bottom: str,
                    font: str) -> Image.Image:
    """Two registration lines of about equal height (motorcycle, trailer, some countries)."""
    height = WORK_HEIGHT
    width = round(height * rng.uniform(1.4, 2.0))
    background, ink = (jitter_colour(rng, colour, 8) for colour in pick(rng, US_COLOURS))
    plate, draw = _blank_plate(background, ink, width, height)
    split = rng.uniform(0.47, 0.53)
    draw_text_line(draw, (0.1 * width, 0.1 * height, 0.9 * width, (split - 0.05) * height), top,
                   font, tuple(ink) + (255,), tracking_ratio=0.1)
    draw_text_line(draw, (0.08 * width, (split + 0.05) * height, 0.92 * width, 0.9 * height),
                   bottom, font, tuple(ink) + (255,), tracking_ratio=0.1)
    return plate


# ---------------------------------------------------------------- frame, warp, camera


def _add_frame_and_bolts(rng: np.random.Generator, plate: Image.Image,
                         config: CropConfig) -> Image.Image:
    """A licence-plate frame around the plate (thick at the bottom, a dealer's name) and bolts."""
    width, height = plate.size
    if rng.random() < config.bolt_probability:
        draw = ImageDraw.Draw(plate)
        radius = rng.uniform(0.03, 0.05) * height
        metal = jitter_colour(rng, (165, 165, 160), 25)
        rows = (0.12, 0.88) if rng.random() < 0.4 else (0.12,)
        for y in rows:
            for x in (0.15, 0.85):
                cx, cy = x * width + rng.normal(0, 2), y * height + rng.normal(0, 2)
                draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius),
                             fill=metal + (255,), outline=(70, 70, 70, 255))
    if rng.random() >= config.frame_probability:
        return plate
    side, top, foot = (round(f * height) for f in (rng.uniform(0.03, 0.08),
                                                    rng.uniform(0.03, 0.1),
                                                    rng.uniform(0.05, 0.18)))
    colour = jitter_colour(rng, pick(rng, ((20, 20, 22), (190, 192, 196), (120, 20, 25))), 10)
    framed = Image.new("RGBA", (width + 2 * side, height + top + foot), colour + (255,))
    dealer = pick(rng, DEALERS)
    if dealer and foot >= 6:
        draw_text_line(ImageDraw.Draw(framed), (0.25 * framed.width, height + top + 0.2 * foot,
                                                0.75 * framed.width, height + top + 0.8 * foot),
                       dealer, "DejaVuSans-Bold.ttf",
                       (240, 240, 240, 255) if sum(colour) < 400 else (20, 20, 20, 255))
    framed.alpha_composite(plate, (side, top))
    return framed


def _on_background(rng: np.random.Generator, plate: Image.Image,
                   config: CropConfig) -> np.ndarray:
    """The plate warped (rotation, perspective) onto car paint, with a margin, as cut."""
    width, height = plate.size
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    if config.effects:
        angle = np.deg2rad(rng.uniform(-1, 1) * config.max_rotation_deg * rng.random())
        centre = corners.mean(axis=0)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = (corners - centre) @ rotation.T + centre
        corners += rng.normal(0, rng.uniform(0, config.max_corner_jitter) * height, (4, 2))
    margin_x, margin_y = rng.uniform(*config.margin, size=2) * [width, height]
    low = corners.min(axis=0) - [margin_x, margin_y]
    size = np.ceil(corners.max(axis=0) + [margin_x, margin_y] - low).astype(int)
    corners -= low
    paint = np.asarray(jitter_colour(rng, pick(rng, CAR_PAINTS), 15), np.float32)
    shade = np.linspace(rng.uniform(0.7, 1.1), rng.uniform(0.7, 1.1), size[1], dtype=np.float32)
    canvas = np.clip(paint * shade[:, None, None] * np.ones((1, size[0], 1), np.float32), 0, 255)
    image = Image.fromarray(canvas.astype(np.uint8)).convert("RGBA")
    coeffs = homography(corners, np.array([[0, 0], [width, 0], [width, height], [0, height]]))
    warped = plate.transform(tuple(size), Image.Transform.PERSPECTIVE, tuple(coeffs),
                             resample=Image.Resampling.BILINEAR)
    image.alpha_composite(warped)
    return np.asarray(image.convert("RGB"))


def _camera(rng: np.random.Generator, image: np.ndarray, plate_height: int,
            config: CropConfig) -> np.ndarray:
    """Lighting, glare, the camera's resolution, blur, noise and JPEG, in capture order."""
    pixels = image.astype(np.float32)
    mean = pixels.mean()
    pixels = ((pixels - mean) * rng.uniform(*config.contrast) + mean) * rng.uniform(*config.gain)
    rows, cols = pixels.shape[:2]
    if rng.random() < config.glare_probability:  # a soft bright spot: sun or a headlight
        ys, xs = np.mgrid[0:rows, 0:cols].astype(np.float32)
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        spread = rng.uniform(0.15, 0.5) * cols
        spot = np.exp(-(((xs - cx) / spread) ** 2 + ((ys - cy) / (0.6 * spread)) ** 2))
        pixels += rng.uniform(80, 220) * spot[..., None]
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    low_res = rng.random() < config.low_res_probability
    target = int(rng.integers(*(config.low_res_height if low_res else config.plate_height),
                              endpoint=True))
    scale = target / plate_height
    size = (max(4, round(cols * scale)), max(4, round(rows * scale)))
    small = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
    if low_res:  # upscaled again, as a small plate is before it is read
        factor = rng.uniform(1.5, 3.0)
        small = small.resize((round(small.width * factor), round(small.height * factor)),
                             Image.Resampling.BICUBIC)
    if rng.random() < config.blur_probability:
        small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0, config.max_blur_radius)))
    pixels = np.asarray(small, np.float32)
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * rng.uniform(
        0, config.max_noise_sigma)
    image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    return jpeg_round_trip(image, int(rng.integers(*config.jpeg_quality, endpoint=True)))[0]

"""Synthetic road scenes with licence plates, for training plate detectors and checking OCR.

Pure numpy + PIL (no TensorFlow), so the TFDS builder, OCR benchmarks and tests can all use it.

A scene is rendered in layers, each callable on its own:

1. ``sample_plates``: registrations, styles, sizes, rotations, perspective and positions
   (non-overlapping, fully inside the image).
2. ``draw_background``: sky/road, buildings, poles, cars (one behind most plates), and clutter
   (distractor text, plate-like rectangles without a registration) kept off the plates.
3. ``composite``: each plate is drawn flat, warped by its homography on a plate-sized patch and
   alpha-blended; its box is the tight axis-aligned box of the warped plate quadrilateral.
4. ``apply_effects``: lighting, blur, noise, JPEG round trip.

``render_scene(seed, config)`` runs them with ``np.random.default_rng(seed)``, so a seed fully
determines the scene. Registration letters exclude I, O and Q, which many plate systems avoid
because they read as 1 and 0.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import io
import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
DIGITS = "0123456789"

# L = letter, D = digit, anything else is drawn literally and left out of the stored text.
DEFAULT_PLATE_FORMATS = ("LLDD LLL", "LLLDDDD", "LL-DDD-LL", "DLLLDDD")

REGISTRATION_FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSansMono-Bold.ttf")
CLUTTER_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
)

US_HEADERS = ("CALIFORNIA", "TEXAS", "NEW YORK", "FLORIDA", "OHIO", "ILLINOIS", "ARIZONA",
              "GEORGIA", "OREGON", "NEVADA", "Colorado", "Virginia")
US_FOOTERS = ("SUNSHINE STATE", "EMPIRE STATE", "LAND OF LINCOLN", "dmv.ca.gov",
              "THE LONE STAR STATE", "GRAND CANYON STATE", "")
EU_COUNTRY_CODES = ("GB", "D", "F", "NL", "I", "E", "B", "PL", "A", "CZ")
CLUTTER_WORDS = ("STOP", "TAXI", "SALE", "OPEN", "PARKING", "EXIT", "BUS", "HOTEL", "CAFE",
                 "NO ENTRY", "ONE WAY", "GARAGE", "SERVICE", "POLICE", "Main St", "30",
                 "50 km/h", "555-0134", "TOYOTA", "FORD", "VW", "AUDI", "1.9 TDI", "BMW")

CAR_COLOURS = ((235, 235, 232), (25, 25, 28), (175, 178, 182), (105, 108, 112), (160, 22, 28),
               (30, 60, 140), (40, 75, 55), (200, 185, 150), (230, 190, 40), (90, 20, 30))


@dataclasses.dataclass(frozen=True)
class PlateStyle:
    """How a plate family looks; ``aspect`` is width / height before jitter."""

    name: str
    background: tuple[int, int, int]
    ink: tuple[int, int, int]
    border: tuple[int, int, int]
    aspect: float
    eu_band: bool = False
    us_header: bool = False


PLATE_STYLES = (
    PlateStyle("white", (242, 242, 236), (15, 15, 15), (20, 20, 20), 4.3),
    PlateStyle("yellow", (250, 204, 22), (12, 12, 12), (20, 20, 20), 4.5),
    PlateStyle("black", (18, 18, 20), (235, 235, 235), (200, 200, 200), 4.0),
    PlateStyle("eu", (244, 244, 240), (15, 15, 15), (25, 25, 25), 4.7, eu_band=True),
    PlateStyle("us", (238, 240, 245), (20, 35, 110), (60, 60, 70), 2.0, us_header=True),
)
STYLE_NAMES = tuple(style.name for style in PLATE_STYLES)


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Everything a scene depends on besides its seed.

    Plate size is drawn as s = sqrt(plate area / image area) from a log-normal with median
    ``scale_median`` and log-spread ``scale_sigma``, truncated to ``scale_range``; the defaults
    follow the real data sets' box statistics (median ~0.14, 5th-95th ~0.05-0.4).
    """

    height: int = 320
    width: int = 320
    plate_formats: tuple[str, ...] = DEFAULT_PLATE_FORMATS
    styles: tuple[str, ...] = STYLE_NAMES
    min_plates: int = 0
    max_plates: int = 3
    scale_median: float = 0.14
    scale_sigma: float = 0.55
    scale_range: tuple[float, float] = (0.03, 0.45)
    aspect_jitter: float = 0.08
    max_rotation_deg: float = 15.0
    jpeg_quality: tuple[int, int] = (30, 95)
    # Toggles, so tests can switch parts off.
    rotation: bool = True
    perspective: bool = True
    lighting: bool = True
    blur: bool = True
    noise: bool = True
    jpeg: bool = True
    clutter: bool = True
    plate_decorations: bool = True  # EU band, US header/footer words

    def without_effects(self) -> SceneConfig:
        """The same scene geometry source with every pixel effect and warp switched off."""
        return dataclasses.replace(self, rotation=False, perspective=False, lighting=False,
                                   blur=False, noise=False, jpeg=False)


@dataclasses.dataclass(frozen=True)
class PlateSpec:
    """One plate to draw: ``quad`` holds its four corners (TL, TR, BR, BL) in image pixels."""

    text: str  # as drawn, separators included
    style: PlateStyle
    font: str
    width: int
    height: int
    quad: np.ndarray  # float64 [4, 2] (x, y)
    on_car: bool
    header: str  # US: state name above the registration; EU: country code in the band
    footer: str  # US: slogan below the registration (may be empty)

    @property
    def registration(self) -> str:
        return registration_of(self.text)

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = self.quad.min(axis=0), self.quad.max(axis=0)
        return float(x0), float(y0), float(x1), float(y1)


@dataclasses.dataclass
class Scene:
    """A rendered scene: pixels, one box and one registration per plate."""

    image: np.ndarray  # uint8 [H, W, 3] RGB
    boxes: np.ndarray  # float32 [N, 4] normalized (ymin, xmin, ymax, xmax)
    texts: list[str]  # registrations: upper-case letters and digits only
    jpeg: bytes | None  # encoding whose decoding is exactly ``image``; None if jpeg is off


# ----------------------------------------------------------------------------- fonts


@functools.cache
def font_dir() -> pathlib.Path:
    """The DejaVu fonts shipped in the matplotlib wheel, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "matplotlib is not installed; kdod renders plates with the DejaVu fonts shipped in "
            "its wheel. Install it with `pip install matplotlib`.")
    return pathlib.Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"


@functools.lru_cache(maxsize=1024)
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = font_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"Font {name} not found at {path}; is matplotlib's wheel intact?")
    return ImageFont.truetype(str(path), max(1, int(size)))


@functools.cache
def cap_height_ratio(font_name: str) -> float:
    """Height of capitals and digits as a fraction of the font size."""
    _, top, _, _ = load_font(font_name, 100).getbbox("H", anchor="ls")
    return -top / 100.0


# ----------------------------------------------------------------------------- text


def random_registration(rng: np.random.Generator, pattern: str) -> str:
    """Fill a pattern: ``L`` -> letter, ``D`` -> digit, other characters kept as they are."""
    chars = []
    for symbol in pattern:
        if symbol == "L":
            chars.append(LETTERS[rng.integers(len(LETTERS))])
        elif symbol == "D":
            chars.append(DIGITS[rng.integers(len(DIGITS))])
        else:
            chars.append(symbol)
    return "".join(chars)


def registration_of(drawn_text: str) -> str:
    return "".join(c for c in drawn_text.upper() if c.isalnum())


def draw_spaced_text(draw: ImageDraw.ImageDraw, x: float, baseline: float, text: str,
                     font: ImageFont.FreeTypeFont, fill, tracking: float) -> None:
    """Draw character by character with extra spacing, as plates space their glyphs."""
    for char in text:
        draw.text((x, baseline), char, font=font, fill=fill, anchor="ls")
        x += font.getlength(char) + tracking


def spaced_text_width(text: str, font: ImageFont.FreeTypeFont, tracking: float) -> float:
    return sum(font.getlength(c) for c in text) + tracking * (len(text) - 1)


def draw_text_line(draw: ImageDraw.ImageDraw, box: tuple[float, float, float, float], text: str,
                   font_name: str, fill, tracking_ratio: float = 0.0) -> None:
    """Draw ``text`` as large as fits in ``box`` (x0, y0, x1, y1), centred, caps filling it."""
    x0, y0, x1, y1 = box
    cap_ratio = cap_height_ratio(font_name)
    size = (y1 - y0) / cap_ratio
    font = load_font(font_name, size)
    width = spaced_text_width(text, font, tracking_ratio * size)
    if width > x1 - x0:  # too wide: shrink to the width instead
        size *= (x1 - x0) / width
        font = load_font(font_name, size)
        width = spaced_text_width(text, font, tracking_ratio * size)
    baseline = (y0 + y1) / 2 + cap_ratio * font.size / 2
    draw_spaced_text(draw, (x0 + x1 - width) / 2, baseline, text, font, fill,
                     tracking_ratio * font.size)


# ----------------------------------------------------------------------------- plates


def plate_pixels(spec: PlateSpec, decorations: bool) -> Image.Image:
    """The flat plate, RGBA, with one transparent pixel of padding all round.

    The padding lets bilinear warping fade the edges (anti-aliasing); it carries the border
    colour so the fade does not darken them.
    """
    style, w, h = spec.style, spec.width, spec.height
    plate = Image.new("RGBA", (w + 2, h + 2), style.border + (0,))
    draw = ImageDraw.Draw(plate)
    border = max(1, round(0.035 * h))
    draw.rounded_rectangle((1, 1, w, h), radius=max(1, round(0.08 * h)),
                           fill=style.background + (255,), outline=style.border + (255,),
                           width=border)
    text_box = [1 + 0.06 * w, 1 + 0.2 * h, 1 + 0.94 * w, 1 + 0.8 * h]
    if decorations and style.eu_band:
        text_box[0] = _draw_eu_band(draw, w, h, border, spec.header) + 0.03 * w
    if decorations and style.us_header:
        text_box[1], text_box[3] = 1 + 0.32 * h, 1 + 0.78 * h
        _draw_us_words(draw, spec, w, h)
    draw_text_line(draw, tuple(text_box), spec.text, spec.font, style.ink + (255,),
                   tracking_ratio=0.12)
    return plate


def _draw_eu_band(draw: ImageDraw.ImageDraw, w: int, h: int, border: int,
                  country: str) -> float:
    """Blue band with a ring of stars and the country code; returns its right edge."""
    right = 1 + border + 0.09 * w
    draw.rectangle((1 + border, 1 + border, right, h - border), fill=(0, 51, 153, 255))
    cx, cy, radius = (1 + border + right) / 2, 1 + 0.3 * h, 0.14 * h
    dot = max(0.5, 0.025 * h)
    for angle in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        x, y = cx + radius * np.cos(angle), cy + radius * np.sin(angle)
        draw.ellipse((x - dot, y - dot, x + dot, y + dot), fill=(255, 204, 0, 255))
    draw_text_line(draw, (1 + border, 1 + 0.6 * h, right, 1 + 0.8 * h), country,
                   "DejaVuSans-Bold.ttf", (255, 255, 255, 255))
    return right


def _draw_us_words(draw: ImageDraw.ImageDraw, spec: PlateSpec, w: int, h: int) -> None:
    # Vary the header look: capitalised names in red, mixed-case ones in blue.
    header_colour = (170, 20, 30, 255) if spec.header.isupper() else (20, 40, 140, 255)
    draw_text_line(draw, (1 + 0.2 * w, 1 + 0.08 * h, 1 + 0.8 * w, 1 + 0.24 * h), spec.header,
                   "DejaVuSerif-Bold.ttf", header_colour)
    if spec.footer:
        draw_text_line(draw, (1 + 0.2 * w, 1 + 0.84 * h, 1 + 0.8 * w, 1 + 0.92 * h),
                       spec.footer, "DejaVuSans.ttf", spec.style.ink + (255,))


def sample_plate_scale(rng: np.random.Generator, config: SceneConfig) -> float:
    """sqrt(plate area / image area), log-normal truncated to ``config.scale_range``."""
    low, high = config.scale_range
    for _ in range(100):
        scale = config.scale_median * np.exp(config.scale_sigma * rng.standard_normal())
        if low <= scale <= high:
            return float(scale)
    return float(np.clip(scale, low, high))


def sample_rotation(rng: np.random.Generator, config: SceneConfig) -> float:
    """Radians; mostly a few degrees, sometimes up to the maximum."""
    if not config.rotation:
        return 0.0
    limit = config.max_rotation_deg
    degrees = rng.uniform(-limit, limit) if rng.random() < 0.15 else rng.normal(0, limit / 4)
    return float(np.deg2rad(np.clip(degrees, -limit, limit)))


def plate_quad(rng: np.random.Generator, config: SceneConfig, w: int, h: int) -> np.ndarray:
    """Corners of the plate centred on the origin after rotation and perspective jitter."""
    corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], dtype=np.float64) / 2
    angle = sample_rotation(rng, config)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = corners @ rotation.T
    if config.perspective:
        corners += rng.normal(0, rng.uniform(0, 0.08) * h, size=(4, 2))
        corners[:, 1] *= 1 + rng.uniform(-0.1, 0.1) * np.array([-1, 1, 1, -1])  # yaw-like skew
    return corners


def plate_size(rng: np.random.Generator, config: SceneConfig,
               style: PlateStyle) -> tuple[int, int]:
    scale = sample_plate_scale(rng, config)
    aspect = style.aspect * np.exp(config.aspect_jitter * rng.standard_normal())
    area = scale**2 * config.height * config.width
    height = np.sqrt(area / aspect)
    width = min(height * aspect, 0.9 * config.width)  # keep room for rotation
    height = min(width / aspect, 0.9 * config.height)
    return max(3, round(width)), max(2, round(height))


def _boxes_overlap(a, b, margin: float) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0]
                or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def sample_plates(rng: np.random.Generator, config: SceneConfig) -> list[PlateSpec]:
    """Plates placed fully inside the image and apart from each other (rejection sampling)."""
    styles = [s for s in PLATE_STYLES if s.name in config.styles]
    count = int(rng.integers(config.min_plates, config.max_plates + 1))
    plates: list[PlateSpec] = []
    for _ in range(count):
        style = styles[rng.integers(len(styles))]
        text = random_registration(rng, config.plate_formats[rng.integers(len(config.plate_formats))])
        font = REGISTRATION_FONTS[rng.integers(len(REGISTRATION_FONTS))]
        header = (US_HEADERS[rng.integers(len(US_HEADERS))] if style.us_header
                  else EU_COUNTRY_CODES[rng.integers(len(EU_COUNTRY_CODES))])
        footer = US_FOOTERS[rng.integers(len(US_FOOTERS))]
        on_car = bool(rng.random() < 0.8)
        for _attempt in range(20):
            w, h = plate_size(rng, config, style)
            quad = plate_quad(rng, config, w, h)
            extent = quad.max(axis=0) - quad.min(axis=0)
            if extent[0] >= config.width - 1 or extent[1] >= config.height - 1:
                continue
            offset = rng.uniform([0, 0], [config.width, config.height] - extent) - quad.min(axis=0)
            spec = PlateSpec(text, style, font, w, h, quad + offset, on_car, header, footer)
            if not any(_boxes_overlap(spec.box_xyxy, p.box_xyxy, 2) for p in plates):
                plates.append(spec)
                break
    return plates


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 8 coefficients of the projective map sending each ``src`` point to ``dst``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs.extend([u, v])
    return np.linalg.solve(np.array(rows), np.array(rhs))


def warp_plate(plate: Image.Image, spec: PlateSpec) -> tuple[Image.Image, int, int]:
    """Warp the flat (padded) plate onto its quad; returns the patch and its top-left corner."""
    x0, y0 = np.floor(spec.quad.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(spec.quad.max(axis=0)).astype(int) + 1
    flat = np.array([[1, 1], [spec.width + 1, 1], [spec.width + 1, spec.height + 1],
                     [1, spec.height + 1]], dtype=np.float64)
    # PIL wants the map from output (patch) coordinates back to input (plate) coordinates.
    coeffs = homography(spec.quad - [x0, y0], flat)
    patch = plate.transform((int(x1 - x0), int(y1 - y0)), Image.Transform.PERSPECTIVE,
                            tuple(coeffs), resample=Image.Resampling.BILINEAR)
    return patch, int(x0), int(y0)


def composite(background: np.ndarray, plates: list[PlateSpec],
              config: SceneConfig) -> tuple[np.ndarray, np.ndarray]:
    """Blend the plates onto the background; returns the image and normalized boxes."""
    image = background.copy()
    height, width = image.shape[:2]
    for spec in plates:
        patch, x0, y0 = warp_plate(plate_pixels(spec, config.plate_decorations), spec)
        _alpha_blend(image, np.asarray(patch), x0, y0)
    boxes = [[y0 / height, x0 / width, y1 / height, x1 / width]
             for x0, y0, x1, y1 in (spec.box_xyxy for spec in plates)]
    return image, np.clip(np.array(boxes, dtype=np.float32).reshape(-1, 4), 0.0, 1.0)


def _alpha_blend(image: np.ndarray, rgba: np.ndarray, x0: int, y0: int) -> None:
    """In place; clips the patch to the image."""
    height, width = image.shape[:2]
    top, left = max(0, y0), max(0, x0)
    bottom, right = min(height, y0 + rgba.shape[0]), min(width, x0 + rgba.shape[1])
    if bottom <= top or right <= left:
        return
    patch = rgba[top - y0:bottom - y0, left - x0:right - x0].astype(np.float32)
    alpha = patch[..., 3:] / 255.0
    region = image[top:bottom, left:right].astype(np.float32)
    image[top:bottom, left:right] = np.rint(region + alpha * (patch[..., :3] - region)).astype(
        np.uint8)


# ----------------------------------------------------------------------------- background


def _jitter_colour(rng: np.random.Generator, colour, spread: float = 12) -> tuple[int, ...]:
    return tuple(int(c) for c in np.clip(np.asarray(colour) + rng.normal(0, spread, 3), 0, 255))


def _vertical_gradient(top, bottom, rows: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32)[:, None, None]
    column = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(column, (rows, width, 3))


def _sky_and_ground(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    horizon = int(rng.uniform(0.2, 0.6) * height)
    sky_top = _jitter_colour(rng, (110, 150, 205) if rng.random() < 0.6 else (150, 150, 155), 20)
    sky_low = _jitter_colour(rng, (215, 220, 228), 15)
    road = rng.uniform(70, 150)
    ground_top = _jitter_colour(rng, (road + 15,) * 3, 8)
    ground_low = _jitter_colour(rng, (road - 25,) * 3, 8)
    image = np.concatenate([_vertical_gradient(sky_top, sky_low, horizon, width),
                            _vertical_gradient(ground_top, ground_low, height - horizon, width)])
    return image.astype(np.uint8)


def _draw_buildings(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int,
                    width: int) -> None:
    x = rng.uniform(-0.1, 0.1) * width
    while x < width:
        w = rng.uniform(0.12, 0.4) * width
        top, bottom = rng.uniform(0.0, 0.35) * height, rng.uniform(0.4, 0.7) * height
        wall = _jitter_colour(rng, rng.choice([(170, 160, 150), (120, 110, 100), (200, 195, 185),
                                               (90, 95, 105)]), 20)
        draw.rectangle((x, top, x + w, bottom), fill=wall)
        step = rng.uniform(0.04, 0.08) * width
        glass = _jitter_colour(rng, (60, 75, 95), 15)
        for wy in np.arange(top + step / 2, bottom - step, step):
            for wx in np.arange(x + step / 3, x + w - step / 2, step):
                draw.rectangle((wx, wy, wx + step * 0.55, wy + step * 0.6), fill=glass)
        x += w + rng.uniform(0, 0.1) * width


def _draw_street_furniture(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int,
                           width: int) -> None:
    """Lane markings converging to a vanishing point, poles and overhead wires."""
    vanish_x, vanish_y = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.55) * height
    paint = (235, 235, 230) if rng.random() < 0.7 else (230, 190, 40)
    for foot in rng.uniform(-0.5, 1.5, size=int(rng.integers(1, 4))) * width:
        for t0 in np.arange(0.15, 1.0, 0.2):
            t1 = t0 + 0.1
            xa, ya = vanish_x + t0 * (foot - vanish_x), vanish_y + t0 * (height - vanish_y)
            xb, yb = vanish_x + t1 * (foot - vanish_x), vanish_y + t1 * (height - vanish_y)
            draw.polygon([(xa - 0.01 * width * t0, ya), (xa + 0.01 * width * t0, ya),
                          (xb + 0.01 * width * t1, yb), (xb - 0.01 * width * t1, yb)],
                         fill=paint)
    for _ in range(int(rng.integers(0, 4))):
        x, w = rng.uniform(0, width), rng.uniform(0.005, 0.02) * width
        draw.rectangle((x, rng.uniform(0, 0.4) * height, x + w, rng.uniform(0.6, 1.0) * height),
                       fill=_jitter_colour(rng, (90, 90, 90), 25))
    for _ in range(int(rng.integers(0, 3))):
        draw.line((0, rng.uniform(0, 0.3) * height, width, rng.uniform(0, 0.3) * height),
                  fill=(40, 40, 40), width=1)


def _draw_car(draw: ImageDraw.ImageDraw, rng: np.random.Generator,
              body: tuple[float, float, float, float]) -> None:
    """A car seen from behind or in front: body, window, lights, bumper and wheels."""
    x0, y0, x1, y1 = body
    w, h = x1 - x0, y1 - y0
    colour = _jitter_colour(rng, CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 10)
    dark = tuple(int(c * 0.45) for c in colour)
    for wx in (x0 + 0.04 * w, x1 - 0.2 * w):  # wheels peeking below the body
        draw.rectangle((wx, y1 - 0.1 * h, wx + 0.16 * w, y1 + 0.12 * h), fill=(20, 20, 22))
    roof = y0 - rng.uniform(0.5, 0.8) * h
    inset = rng.uniform(0.1, 0.2) * w
    draw.polygon([(x0 + inset, roof), (x1 - inset, roof), (x1 - 0.03 * w, y0 + 0.02 * h),
                  (x0 + 0.03 * w, y0 + 0.02 * h)], fill=colour)
    glass = _jitter_colour(rng, (45, 55, 70), 15)
    draw.polygon([(x0 + inset + 0.04 * w, roof + 0.1 * h), (x1 - inset - 0.04 * w, roof + 0.1 * h),
                  (x1 - 0.09 * w, y0 - 0.02 * h), (x0 + 0.09 * w, y0 - 0.02 * h)], fill=glass)
    draw.rounded_rectangle(body, radius=max(1, int(0.12 * h)), fill=colour)
    light = (200, 30, 30) if rng.random() < 0.6 else (235, 225, 190)
    for lx in (x0 + 0.04 * w, x1 - 0.19 * w):
        draw.rectangle((lx, y0 + 0.15 * h, lx + 0.15 * w, y0 + 0.38 * h), fill=light)
    draw.rectangle((x0, y1 - 0.22 * h, x1, y1 - 0.05 * h), fill=dark)  # bumper


def _car_around(rng: np.random.Generator, spec: PlateSpec) -> tuple[float, float, float, float]:
    """A car body box that holds the plate in its lower middle."""
    x0, y0, x1, y1 = spec.box_xyxy
    body_w = (x1 - x0) * rng.uniform(2.6, 4.0) * spec.style.aspect / 4.5
    body_w = max(body_w, (x1 - x0) * 1.6)
    body_h = body_w * rng.uniform(0.35, 0.5)
    cx = (x0 + x1) / 2 + rng.uniform(-0.05, 0.05) * body_w
    top = (y0 + y1) / 2 - rng.uniform(0.5, 0.72) * body_h
    return cx - body_w / 2, top, cx + body_w / 2, top + body_h


def _free_box(rng: np.random.Generator, width: int, height: int, box_w: float, box_h: float,
              avoid: list[tuple[float, float, float, float]]):
    """A box of the given size inside the image that overlaps none of ``avoid``, or None."""
    if box_w >= width or box_h >= height:
        return None
    for _ in range(10):
        x, y = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
        box = (x, y, x + box_w, y + box_h)
        if not any(_boxes_overlap(box, other, 3) for other in avoid):
            return box
    return None


def _draw_distractor_text(draw: ImageDraw.ImageDraw, rng: np.random.Generator, height: int,
                          width: int, avoid) -> None:
    """Words and numbers that are not plates: signs, badges, registrations without a frame."""
    for _ in range(int(rng.integers(1, 5))):
        if rng.random() < 0.3:
            text = random_registration(rng, DEFAULT_PLATE_FORMATS[rng.integers(len(DEFAULT_PLATE_FORMATS))])
        else:
            text = CLUTTER_WORDS[rng.integers(len(CLUTTER_WORDS))]
        font_name = CLUTTER_FONTS[rng.integers(len(CLUTTER_FONTS))]
        font = load_font(font_name, rng.uniform(0.025, 0.09) * height)
        left, top, right, bottom = font.getbbox(text)
        box = _free_box(rng, width, height, right - left, bottom - top, avoid)
        if box is None:
            continue
        if rng.random() < 0.4:  # on a sign
            draw.rectangle((box[0] - 3, box[1] - 3, box[2] + 3, box[3] + 3),
                           fill=_jitter_colour(rng, (30, 90, 160) if rng.random() < 0.5
                                               else (240, 240, 235), 20))
        ink = (255, 255, 255) if rng.random() < 0.4 else _jitter_colour(rng, (30, 30, 30), 25)
        draw.text((box[0] - left, box[1] - top), text, font=font, fill=ink)


def _draw_hard_negatives(draw: ImageDraw.ImageDraw, rng: np.random.Generator,
                         config: SceneConfig, avoid) -> None:
    """Plate-shaped rectangles without a registration: blanks, frames, dealer stickers."""
    height, width = config.height, config.width
    for _ in range(int(rng.integers(0, 3))):
        style = PLATE_STYLES[rng.integers(len(PLATE_STYLES))]
        w, h = plate_size(rng, config, style)
        box = _free_box(rng, width, height, w, h, avoid)
        if box is None:
            continue
        draw.rounded_rectangle(box, radius=max(1, round(0.08 * h)), fill=style.background,
                               outline=style.border, width=max(1, round(0.035 * h)))
        if rng.random() < 0.5:
            word = CLUTTER_WORDS[rng.integers(len(CLUTTER_WORDS))]
            inner = (box[0] + 0.2 * w, box[1] + 0.35 * h, box[2] - 0.2 * w, box[3] - 0.35 * h)
            draw_text_line(draw, inner, word, CLUTTER_FONTS[rng.integers(len(CLUTTER_FONTS))],
                           style.ink)
        avoid.append(box)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Smooth low-frequency noise (+-~10 levels) so flat areas are not perfectly flat."""
    coarse = rng.normal(0, 6, size=(max(2, height // 16), max(2, width // 16))).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height),
                                                                 Image.Resampling.BILINEAR))
    fine = rng.normal(0, 3, size=(max(2, height // 2), max(2, width // 2))).astype(np.float32)
    fine = np.asarray(Image.fromarray(fine).resize((width, height),
                                                             Image.Resampling.NEAREST))
    return (smooth + fine)[..., None]


def draw_background(rng: np.random.Generator, config: SceneConfig,
                    plates: list[PlateSpec]) -> np.ndarray:
    """A road-photo-like scene with cars behind the plates that ride on one; uint8 RGB.

    Clutter stays off the plates' boxes so every pixel a plate does not cover is background.
    """
    height, width = config.height, config.width
    canvas = Image.fromarray(_sky_and_ground(rng, height, width))
    draw = ImageDraw.Draw(canvas)
    _draw_buildings(draw, rng, height, width)
    _draw_street_furniture(draw, rng, height, width)
    for _ in range(int(rng.integers(0, 3))):  # cars without a visible plate
        body_w = rng.uniform(0.2, 0.6) * width
        x, y = rng.uniform(-0.2, 0.9) * width, rng.uniform(0.3, 0.9) * height
        _draw_car(draw, rng, (x, y, x + body_w, y + body_w * rng.uniform(0.35, 0.5)))
    for spec in plates:
        if spec.on_car:
            _draw_car(draw, rng, _car_around(rng, spec))
    if config.clutter:
        avoid = [spec.box_xyxy for spec in plates]
        _draw_hard_negatives(draw, rng, config, avoid)
        _draw_distractor_text(draw, rng, height, width, avoid)
    image = np.asarray(canvas, dtype=np.float32) + _texture(rng, height, width)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- effects


def _lighting(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Brightness/contrast, a linear light gradient and sometimes a hard-edged shadow."""
    height, width = image.shape[:2]
    gain = rng.uniform(0.65, 1.25)
    contrast = rng.uniform(0.7, 1.2)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xs * np.cos(angle) + ys * np.sin(angle)) / max(height, width)  # about -1.4..1.4
    light = 1.0 + rng.uniform(0, 0.25) * ramp
    if rng.random() < 0.3:
        light = np.where(ramp > rng.uniform(-0.7, 0.7), light * rng.uniform(0.45, 0.8), light)
    mean = image.mean()
    return ((image - mean) * contrast + mean) * gain * light[..., None]


def jpeg_round_trip(image: np.ndarray, quality: int) -> tuple[np.ndarray, bytes]:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    encoded = buffer.getvalue()
    return decode_jpeg(encoded), encoded


def decode_jpeg(encoded: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(encoded)) as decoded:
        return np.asarray(decoded.convert("RGB"))


def apply_effects(rng: np.random.Generator, image: np.ndarray,
                  config: SceneConfig) -> tuple[np.ndarray, bytes | None]:
    """Camera effects in capture order; returns the image and its JPEG bytes (if jpeg is on)."""
    if config.lighting or config.noise:
        pixels = image.astype(np.float32)
        if config.lighting:
            pixels = _lighting(rng, pixels)
        if config.noise:
            pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * rng.uniform(0, 8)
        image = np.clip(np.rint(pixels), 0, 255).astype(np.uint8)
    if config.blur:
        radius = rng.uniform(0, 1.3) if rng.random() < 0.7 else 0.0
        image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)))
    if config.jpeg:
        return jpeg_round_trip(image, rng.integers(config.jpeg_quality[0],
                                                   config.jpeg_quality[1] + 1))
    return image, None


# ----------------------------------------------------------------------------- scene


def render_scene(seed: int, config: SceneConfig = SceneConfig()) -> Scene:
    """Render one scene; the same (seed, config) always gives the same image and boxes."""
    rng = np.random.default_rng(seed)
    plates = sample_plates(rng, config)
    background = draw_background(rng, config, plates)
    image, boxes = composite(background, plates, config)
    image, encoded = apply_effects(rng, image, config)
    return Scene(image=image, boxes=boxes, texts=[p.registration for p in plates], jpeg=encoded)

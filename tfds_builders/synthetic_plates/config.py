"""The scene's knobs: everything a rendered scene depends on besides its seed.

``SceneConfig`` holds the image size, plate content, sizes and warps, the switches of each
effect, and three groups of tunables: ``PlateWords`` (what decorated plates say besides the
registration), ``StreetConfig`` (what the background is made of) and ``CameraConfig`` (how
strong the pixel effects get). Every stage reads its settings from here, so changing a default
changes the rendering, and the defaults fix the rendering of every seed.
"""

from __future__ import annotations

import dataclasses

from tfds_builders.synthetic_plates.plates import RGB, STYLE_NAMES

# L = letter, D = digit, anything else is drawn literally and left out of the stored text.
DEFAULT_PLATE_FORMATS = ("LLDD LLL", "LLLDDDD", "LL-DDD-LL", "DLLLDDD")


@dataclasses.dataclass(frozen=True)
class PlateWords:
    """Words decorated plates carry besides the registration, each drawn uniformly."""

    us_headers: tuple[str, ...] = (
        "CALIFORNIA", "TEXAS", "NEW YORK", "FLORIDA", "OHIO", "ILLINOIS", "ARIZONA",
        "GEORGIA", "OREGON", "NEVADA", "Colorado", "Virginia")
    us_footers: tuple[str, ...] = (  # "" leaves the slogan out
        "SUNSHINE STATE", "EMPIRE STATE", "LAND OF LINCOLN", "dmv.ca.gov",
        "THE LONE STAR STATE", "GRAND CANYON STATE", "")
    eu_country_codes: tuple[str, ...] = ("GB", "D", "F", "NL", "I", "E", "B", "PL", "A", "CZ")


@dataclasses.dataclass(frozen=True)
class StreetConfig:
    """What the background is made of; counts are (fewest, most) per scene."""

    clear_sky_probability: float = 0.6  # otherwise overcast
    sky_colours: tuple[RGB, RGB] = ((110, 150, 205), (150, 150, 155))  # clear, overcast
    wall_colours: tuple[RGB, ...] = (
        (170, 160, 150), (120, 110, 100), (200, 195, 185), (90, 95, 105))
    car_colours: tuple[RGB, ...] = (
        (235, 235, 232), (25, 25, 28), (175, 178, 182), (105, 108, 112), (160, 22, 28),
        (30, 60, 140), (40, 75, 55), (200, 185, 150), (230, 190, 40), (90, 20, 30))
    cars_without_plate: tuple[int, int] = (0, 2)
    hard_negatives: tuple[int, int] = (0, 2)  # plate-shaped rectangles without a registration
    distractor_texts: tuple[int, int] = (1, 4)
    # Distractor texts that are registrations without a plate, and their formats.
    registration_distractor_probability: float = 0.3
    distractor_formats: tuple[str, ...] = DEFAULT_PLATE_FORMATS
    clutter_words: tuple[str, ...] = (
        "STOP", "TAXI", "SALE", "OPEN", "PARKING", "EXIT", "BUS", "HOTEL", "CAFE", "NO ENTRY",
        "ONE WAY", "GARAGE", "SERVICE", "POLICE", "Main St", "30", "50 km/h", "555-0134",
        "TOYOTA", "FORD", "VW", "AUDI", "1.9 TDI", "BMW")


@dataclasses.dataclass(frozen=True)
class CameraConfig:
    """How strong the pixel effects get; ranges are drawn uniformly per scene."""

    gain: tuple[float, float] = (0.65, 1.25)
    contrast: tuple[float, float] = (0.7, 1.2)
    max_light_gradient: float = 0.25  # brightness change across the image, at most
    shadow_probability: float = 0.3
    shadow_gain: tuple[float, float] = (0.45, 0.8)
    max_noise_sigma: float = 8.0  # grey levels
    blur_probability: float = 0.7
    max_blur_radius: float = 1.3  # pixels


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
    plate_words: PlateWords = PlateWords()
    min_plates: int = 0
    max_plates: int = 3
    on_car_probability: float = 0.8
    scale_median: float = 0.14
    scale_sigma: float = 0.55
    scale_range: tuple[float, float] = (0.03, 0.45)
    aspect_jitter: float = 0.08
    max_rotation_deg: float = 15.0
    wide_rotation_probability: float = 0.15  # uniform up to the maximum, else mostly small
    max_corner_jitter: float = 0.08  # perspective: corner noise, in plate heights, at most
    max_skew: float = 0.1  # perspective: yaw-like height change of the plate's sides
    jpeg_quality: tuple[int, int] = (30, 95)
    street: StreetConfig = StreetConfig()
    camera: CameraConfig = CameraConfig()
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

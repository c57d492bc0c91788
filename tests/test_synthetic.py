"""Tests of the plate-scene renderer: boxes, text, determinism and scale coverage."""

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tfds_builders.synthetic_plates import plates
from tfds_builders.synthetic_plates.background import draw_background
from tfds_builders.synthetic_plates.config import PlateWords
from tfds_builders.synthetic_plates.effects import decode_jpeg
from tfds_builders.synthetic_plates.lettering import load_font
from tfds_builders.synthetic_plates.placement import sample_plates
from tfds_builders.synthetic_plates.scene import Scene, SceneConfig, render_scene

SMALL = SceneConfig(height=160, width=160, min_plates=1, max_plates=3)


def _background_and_scene(seed: int, config: SceneConfig):
    """The background alone and the full scene, from the same seed."""
    rng = np.random.default_rng(seed)
    background = draw_background(rng, config, sample_plates(rng, config))
    return background, render_scene(seed, config)


def _pixel_boxes(scene: Scene) -> np.ndarray:
    height, width = scene.image.shape[:2]
    return scene.boxes * np.array([height, width, height, width], dtype=np.float32)


@pytest.mark.parametrize("warped", [False, True], ids=["flat", "rotated+perspective"])
@pytest.mark.parametrize("seed", range(6))
def test_boxes_tightly_enclose_the_plates(seed, warped):
    config = dataclasses.replace(SMALL.without_effects(), rotation=warped, perspective=warped)
    background, scene = _background_and_scene(seed, config)
    changed = np.any(scene.image != background, axis=-1)
    inside_some_box = np.zeros_like(changed)
    for ymin, xmin, ymax, xmax in _pixel_boxes(scene):
        # Pixels are squares [i, i+1); allow one pixel of anti-aliased edge.
        rows = slice(max(0, int(ymin) - 1), int(np.ceil(ymax)) + 1)
        cols = slice(max(0, int(xmin) - 1), int(np.ceil(xmax)) + 1)
        inside_some_box[rows, cols] = True
        ys, xs = np.nonzero(changed[rows, cols])
        extent = (ys.min() + rows.start, xs.min() + cols.start,
                  ys.max() + rows.start + 1, xs.max() + cols.start + 1)
        np.testing.assert_allclose(extent, (ymin, xmin, ymax, xmax), atol=2.0)
    assert not np.any(changed & ~inside_some_box), "plate pixels outside every box"


# ---------------------------------------------------------------- reading text back

GLYPH_SHAPE = (24, 32)  # width, height every glyph is compared at
ALPHABET = plates.LETTERS + plates.DIGITS
READABLE = SceneConfig(
    height=200, width=480, min_plates=1, max_plates=1, scale_median=0.42, scale_sigma=0.05,
    scale_range=(0.4, 0.45), plate_decorations=False,
).without_effects()


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2]))


def _normalized_glyph(ink: np.ndarray) -> tuple[np.ndarray, float]:
    """The glyph trimmed to its ink, resized to GLYPH_SHAPE, and its width/height."""
    ys, xs = np.nonzero(ink)
    trimmed = ink[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    resized = Image.fromarray(trimmed.astype(np.uint8) * 255).resize(GLYPH_SHAPE,
                                                                     Image.Resampling.BILINEAR)
    return np.asarray(resized, np.float32) / 255, trimmed.shape[1] / trimmed.shape[0]


def _templates(font_name: str) -> dict[str, tuple[np.ndarray, float]]:
    font = load_font(font_name, 96)
    templates = {}
    for char in ALPHABET:
        canvas = Image.new("L", (120, 120))
        ImageDraw.Draw(canvas).text((10, 100), char, font=font, fill=255, anchor="ls")
        templates[char] = _normalized_glyph(np.asarray(canvas) > 127)
    return templates


TEMPLATES = {name: _templates(name) for name in plates.REGISTRATION_FONTS}


def _segment_registration(plate: np.ndarray) -> list[np.ndarray]:
    """Binary glyph images of the tallest text line, separators (short marks) left out."""
    height, width = plate.shape[:2]
    inner = plate[int(0.12 * height):height - int(0.12 * height),  # drop border and corners
                  int(0.04 * width):width - int(0.04 * width)].astype(np.int32)
    background = np.median(inner.reshape(-1, 3), axis=0)
    distance = np.abs(inner - background).sum(axis=-1)
    ink = distance > distance.max() / 2
    top, bottom = max(_runs(ink.any(axis=1)), key=lambda run: run[1] - run[0])
    line = ink[top:bottom]
    glyphs = [line[:, left:right] for left, right in _runs(line.any(axis=0))]
    return [g for g in glyphs if np.ptp(np.nonzero(g)[0]) + 1 >= 0.6 * (bottom - top)]


def _classify(glyph: np.ndarray, templates) -> tuple[str, float]:
    shape, aspect = _normalized_glyph(glyph)
    scores = {char: np.abs(shape - t_shape).mean() + 0.5 * abs(np.log(aspect / t_aspect))
              for char, (t_shape, t_aspect) in templates.items()}
    char = min(scores, key=scores.get)
    return char, scores[char]


def read_plate(plate: np.ndarray) -> str:
    """Template-matching OCR, in whichever registration font fits the glyphs best."""
    glyphs = _segment_registration(plate)
    readings = []
    for templates in TEMPLATES.values():
        chars, scores = zip(*(_classify(g, templates) for g in glyphs))
        readings.append((sum(scores), "".join(chars)))
    return min(readings)[1]


@pytest.mark.parametrize("style", plates.STYLE_NAMES)
@pytest.mark.parametrize("seed", range(3))
def test_text_matches_the_drawn_registration(seed, style):
    scene = render_scene(seed, dataclasses.replace(READABLE, styles=(style,)))
    (ymin, xmin, ymax, xmax), = _pixel_boxes(scene)
    plate = scene.image[int(np.ceil(ymin)):int(ymax), int(np.ceil(xmin)):int(xmax)]
    assert read_plate(plate) == scene.texts[0]


def test_reader_rejects_a_different_registration():
    """The check above is independent: an image of other text does not read as this text."""
    first = render_scene(0, READABLE)
    other = render_scene(1, READABLE)
    (ymin, xmin, ymax, xmax), = _pixel_boxes(other)
    plate = other.image[int(np.ceil(ymin)):int(ymax), int(np.ceil(xmin)):int(xmax)]
    assert first.texts[0] != other.texts[0]
    assert read_plate(plate) != first.texts[0]


# ---------------------------------------------------------------- determinism, contents


def test_same_seed_same_scene_and_different_seed_different_scene():
    first, again, other = (render_scene(seed, SMALL) for seed in (7, 7, 8))
    assert first.jpeg == again.jpeg
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    assert first.texts == again.texts
    assert first.jpeg != other.jpeg


def test_scene_contents_follow_the_contract():
    config = SceneConfig(height=96, width=128, plate_formats=("LL-DDD-LL",))
    for seed in range(20):
        scene = render_scene(seed, config)
        assert scene.image.shape == (96, 128, 3) and scene.image.dtype == np.uint8
        assert scene.boxes.shape == (len(scene.texts), 4) and scene.boxes.dtype == np.float32
        assert len(scene.texts) <= config.max_plates
        assert np.all((scene.boxes >= 0) & (scene.boxes <= 1))
        assert np.all(scene.boxes[:, 2:] > scene.boxes[:, :2])
        for text in scene.texts:
            assert len(text) == 7 and text.isalnum() and text.isupper()
            assert not set(text) & set("IOQ")
        np.testing.assert_array_equal(decode_jpeg(scene.jpeg), scene.image)


def test_plate_scales_cover_tiny_to_large():
    config = SceneConfig(min_plates=1)
    scales = []
    for seed in range(120):
        for spec in sample_plates(np.random.default_rng(seed), config):
            x0, y0, x1, y1 = spec.box_xyxy
            scales.append(np.sqrt((x1 - x0) * (y1 - y0) / (config.height * config.width)))
    scales = np.array(scales)
    assert len(scales) >= 200
    assert np.any(scales < 0.06) and np.any(scales > 0.3)
    assert 0.1 < np.median(scales) < 0.22


def test_missing_font_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="NoSuchFont.ttf"):
        load_font("NoSuchFont.ttf", 12)


def test_plate_words_come_from_the_config():
    words = PlateWords(us_headers=("UTAH",), us_footers=("LIFE ELEVATED",),
                       eu_country_codes=("IRL",))
    config = SceneConfig(min_plates=3, styles=("us", "eu"), plate_words=words)
    specs = [spec for seed in range(5)
             for spec in sample_plates(np.random.default_rng(seed), config)]
    assert {spec.header for spec in specs} == {"UTAH", "IRL"}
    assert {spec.footer for spec in specs} == {"LIFE ELEVATED"}

"""Plate-text post-processing, line selection and crop preparation on hand-written cases."""

import numpy as np
import pytest

from kdod.ocr import base, cropping, plate_text
from kdod.ocr.base import ReadOptions, TextLine


@pytest.mark.parametrize("raw, expected", [
    ("ab 12-cd", "AB12CD"), (" x.Y_z ", "XYZ"), ("Über 7!", "BER7"), ("", "")])
def test_normalize_keeps_upper_case_letters_and_digits(raw, expected):
    assert plate_text.normalize_text(raw) == expected


@pytest.mark.parametrize("text, patterns, expected, cost", [
    ("0B63RU1206", ["LLDDLLDDDD"], "OB63RU1206", 1),  # the case
    ("AB12CDE", ["LLDDLLL"], "AB12CDE", 0),  # already in format: unchanged
    ("A812C0E", ["LLDDLLL"], "AB12COE", 2),  # 8 -> B, 0 -> O at letter positions
    ("ABIZCDE", ["LLDDLLL"], "AB12CDE", 2),  # I -> 1, Z -> 2 at digit positions
    ("5G0", ["DDD"], "560", 1),  # S/5 and G/6 both ways
    ("1AB12CDE", ["LLDDLLL"], "AB12CDE", 1),  # a frame bar read as 1 is dropped
    ("ABX2CDE", ["LLDDLLL"], "ABX2CDE", None),  # X has no digit look-alike: no fit
    ("AB12CD", ["LLDDLLL"], "AB12CD", None),  # too short for the pattern
])
def test_apply_formats_fixes_look_alikes_where_the_format_says(text, patterns, expected, cost):
    assert plate_text.apply_formats(text, patterns) == (expected, cost)


def test_apply_formats_prefers_the_pattern_needing_fewest_changes():
    # 'DLLLDDD' fits with no change; 'LLLDDDD' would need 8 -> B.
    assert plate_text.apply_formats("8ABC123", ["LLLDDDD", "DLLLDDD"]) == ("8ABC123", 0)


def test_formats_by_region_and_errors():
    assert "LLDDLLL" in plate_text.resolve_formats("uk+synthetic")
    assert plate_text.resolve_formats(["LLD*"]) == ("LLD*",)
    with pytest.raises(ValueError, match="Unknown plate format region 'mars'"):
        ReadOptions(formats="mars")
    with pytest.raises(ValueError, match="L \\(letter\\)"):
        plate_text.resolve_formats(["AB12"])


def _us_plate_lines():
    """What an engine reads on a US plate: state name, registration in two pieces, slogan."""
    return [TextLine("CALIFORNIA", 0.95, (40, 5, 160, 20)),
            TextLine("7ABC", 0.9, (20, 28, 95, 68)), TextLine("123", 0.85, (105, 29, 170, 67)),
            TextLine("dmv.ca.gov", 0.9, (60, 74, 140, 84))]


def test_selection_picks_the_registration_among_state_name_and_slogan():
    read = base.lines_to_plate(_us_plate_lines(), 90)
    assert read.text == "7ABC123"
    assert 0.85 <= read.score <= 0.9
    # The naive baseline joins everything.
    assert base.lines_to_plate(_us_plate_lines(), 90, ReadOptions(select=False)).text == \
        "CALIFORNIA7ABC123DMVCAGOV"


def test_selection_prefers_a_line_in_format_over_a_taller_word():
    lines = [TextLine("TEXAS", 0.99, (10, 10, 100, 50)),
             TextLine("ABC1234", 0.7, (10, 55, 110, 92))]
    assert base.lines_to_plate(lines, 100, ReadOptions(formats="us")).text == "ABC1234"


def test_correction_applies_after_selection_and_only_with_formats():
    lines = [TextLine("OHIO", 0.9, (30, 2, 90, 14)), TextLine("A8C1Z34", 0.8, (5, 20, 120, 60))]
    assert base.lines_to_plate(lines, 64, ReadOptions(formats=["LLLDDDD"])).text == "ABC1234"
    assert base.lines_to_plate(lines, 64, ReadOptions(formats=["LLLDDDD"], correct=False)
                               ).text == "A8C1Z34"


def test_nothing_read_gives_an_empty_text_with_zero_score():
    assert base.lines_to_plate([], 50) == base.PlateRead("", 0.0)
    assert base.lines_to_plate([TextLine("-.", 0.5, (0, 0, 5, 5))], 50) == base.PlateRead("", 0.0)


def test_crop_box_adds_a_margin_and_stays_inside_the_image():
    image = np.zeros((100, 200, 3), np.uint8)
    assert cropping.crop_box(image, [0.2, 0.25, 0.4, 0.75], margin=0.1).shape == (24, 120, 3)
    assert cropping.crop_box(image, [0.0, 0.0, 1.0, 1.0], margin=0.5).shape == (100, 200, 3)
    assert cropping.crop_box(image, [1.0, 1.0, 1.0, 1.0]).shape == (1, 1, 3)  # degenerate


def test_prepare_crop_trims_bars_upscales_and_stretches_contrast():
    crop = np.full((20, 60, 3), 110, np.uint8)
    crop[5:15, 10:50] = 140  # faint "text" block
    crop[:, :3] = 0  # a black bar on the left edge
    prepared = cropping.prepare_crop(crop, cropping.CropPreparation(
        min_height=40, pad=0.0))
    # The bar and the flat columns on both sides are trimmed (at most 15% of 60 per side),
    # then the crop is upscaled 2x.
    assert prepared.shape[:2] == (40, (60 - 2 * 9) * 2)
    assert prepared.max() == 255 and prepared.min() == 0  # contrast stretched
    padded = cropping.prepare_crop(crop, cropping.CropPreparation(min_height=40, pad=0.25))
    assert padded.shape == (60, prepared.shape[1] + 20, 3)

"""kdod.files: JSON and CSV written whole or not at all."""

import json

import pytest

from kdod import files


def test_a_write_that_fails_midway_keeps_the_file_already_there(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("the labels of an earlier run\n")

    def rows_then_failure():
        yield ["crops/00000.png", "AB123"]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        files.write_csv(path, ["filename", "plate_text"], rows_then_failure())
    assert path.read_text() == "the labels of an earlier run\n"
    assert not list(tmp_path.glob("partial-*"))

    files.write_csv(path, ["filename", "plate_text"], [["crops/00000.png", "AB123"]])
    assert path.read_text().splitlines() == ["filename,plate_text", "crops/00000.png,AB123"]
    files.write_json(tmp_path / "new" / "summary.json", {"plates": 1})
    assert json.loads((tmp_path / "new" / "summary.json").read_text()) == {"plates": 1}

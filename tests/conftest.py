"""Shared fixtures: a private TFDS folder holding the tiny synthetic plate set."""

from pathlib import Path

import gin
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A TFDS data_dir with synthetic_plates/tiny built in it (a few seconds, once per session)."""
    import tensorflow_datasets as tfds

    import tfds_builders  # noqa: F401  Registers the builders.

    data_dir = str(tmp_path_factory.mktemp("tensorflow_datasets"))
    tfds.builder("synthetic_plates/tiny", data_dir=data_dir).download_and_prepare()
    return data_dir


@pytest.fixture
def clean_gin():
    gin.clear_config()
    yield
    gin.clear_config()

"""Backbones: multi-scale outputs, local weight files, a clear error when ImageNet is offline."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import kdod
from kdod.config import ConfigError


@pytest.mark.parametrize("name", kdod.BACKBONES.list())
def test_backbone_returns_features_at_strides_8_16_32(name):
    model = kdod.BACKBONES.get(name)(input_shape=(64, 64, 3))
    features = model(np.zeros((2, 64, 64, 3), np.float32))
    assert {s: tuple(f.shape[:3]) for s, f in features.items()} == {
        8: (2, 8, 8), 16: (2, 4, 4), 32: (2, 2, 2)}


def test_bad_input_shape_is_refused_with_the_rule():
    with pytest.raises(ConfigError, match="multiple of 32"):
        kdod.BACKBONES.get("mobilenet_v2")(input_shape=(100, 100, 3))


def test_local_weights_file_is_loaded(tmp_path):
    path = str(tmp_path / "mobilenet_v2_035.weights.h5")
    source = keras.applications.MobileNetV2(input_shape=(64, 64, 3), alpha=0.35,
                                            include_top=False, weights=None)
    source.save_weights(path)
    backbone = kdod.BACKBONES.get("mobilenet_v2")(input_shape=(64, 64, 3), alpha=0.35,
                                                   weights=path)
    loaded = {v.path.split("/", 1)[-1]: v.numpy() for v in backbone.weights}
    expected = {v.path.split("/", 1)[-1]: v.numpy() for v in source.weights}
    assert len(loaded) == len(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded[key], value)


def test_missing_weights_file_is_named():
    with pytest.raises(FileNotFoundError, match="no/such.weights.h5"):
        kdod.BACKBONES.get("resnet50")(input_shape=(64, 64, 3), weights="no/such.weights.h5")


def test_imagenet_download_failure_explains_the_offline_options(tmp_path):
    """Downloads really fail here: the proxy is a closed local port."""
    code = ("import kdod\n"
            "kdod.BACKBONES.get('mobilenet_v2')(input_shape=(64, 64, 3), weights='imagenet')\n")
    env = {**os.environ, "KERAS_HOME": str(tmp_path), "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode != 0
    assert "WeightsUnavailableError" in result.stderr
    assert "weights=None" in result.stderr and "mobilenet_v2" in result.stderr


def test_csp_darknet_at_yolov8n_scale_has_its_channels_and_bottlenecks():
    model = kdod.BACKBONES.get("csp_darknet")(input_shape=(64, 64, 3), width=0.25, depth=0.33)
    features = model(np.zeros((1, 64, 64, 3), np.float32))
    assert {s: f.shape[-1] for s, f in features.items()} == {8: 64, 16: 128, 32: 256}
    bottlenecks = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(bottlenecks) == 1 + 2 + 2 + 1  # YOLOv8n's 3-6-6-3 at depth 0.33


@pytest.mark.parametrize(("binding", "message"), [({"activation": "gelu"}, "relu"),
                                                  ({"width": 0.0}, "width")])
def test_csp_darknet_refuses_bad_settings_naming_them(binding, message):
    with pytest.raises(ConfigError, match=message):
        kdod.BACKBONES.get("csp_darknet")(input_shape=(64, 64, 3), **binding)

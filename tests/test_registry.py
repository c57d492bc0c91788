"""Registries: decorator registration, wildcard listing, did-you-mean errors, plugins."""

import subprocess
import sys
import textwrap

import gin
import pytest

import kdod
from kdod.registry import Registry, UnknownComponentError


@pytest.fixture(scope="module")
def colours():
    # gin keeps configurables for the whole process: build once, with names no real
    # component has (a second "mobilenet_v2" would make gin bindings of it ambiguous).
    registry = Registry("colour_test")
    for name in ("toy_mobilenet_v2", "toy_mobilenet_v3_small", "toy_resnet50"):
        registry.register(name)(lambda name=name: name)
    return registry


def test_lookup_and_wildcard_list(colours):
    assert colours.get("toy_resnet50")() == "toy_resnet50"
    assert colours.list("toy_mobilenet*") == ["toy_mobilenet_v2", "toy_mobilenet_v3_small"]
    assert colours.list() == ["toy_mobilenet_v2", "toy_mobilenet_v3_small", "toy_resnet50"]
    assert "toy_resnet50" in colours and "toy_resnet18" not in colours


def test_unknown_name_suggests_the_closest(colours):
    with pytest.raises(UnknownComponentError) as error:
        colours.get("toy_mobilenetv2")
    message = str(error.value)
    assert "Did you mean 'toy_mobilenet_v2'" in message
    assert "Known: toy_mobilenet_v2, toy_mobilenet_v3_small, toy_resnet50" in message


def test_duplicate_registration_is_refused(colours):
    with pytest.raises(ValueError, match="registered twice"):
        colours.register("toy_resnet50")(lambda: None)


def test_registered_component_is_configurable_in_gin_under_its_name():
    registry = Registry("gin_test")

    @registry.register("scaled_loss_for_test")
    def scaled(value, weight=1.0):
        return value * weight

    gin.parse_config("scaled_loss_for_test.weight = 3.0")
    try:
        assert registry.build("scaled_loss_for_test", 2.0) == 6.0
    finally:
        gin.clear_config()


def _write_distribution(root, name, module_source, module_name):
    """A real installed distribution: a module plus NAME-0.1.dist-info with entry points."""
    (root / f"{module_name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[kdod.plugins]\n{name} = {module_name}\n")


def _run_python(code, path):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                          capture_output=True, text=True,
                          env={"PYTHONPATH": str(path), "PATH": ""}, timeout=120)


def test_plugin_in_a_real_dist_info_is_discovered_lazily_and_once(tmp_path):
    _write_distribution(tmp_path, "good_plugin", """
        import kdod
        COUNT = globals().get("COUNT", 0) + 1

        @kdod.register_loss("plugin_loss")
        def plugin_loss(student, teacher, batch, scale=2.0):
            return scale
        """, "good_plugin_module")
    result = _run_python("""
        import sys, kdod
        assert "good_plugin_module" not in sys.modules  # lazy: nothing imported yet
        print(kdod.LOSSES.list("plugin*"))
        kdod.LOSSES.get("plugin_loss"); kdod.BACKBONES.list()
        print(sys.modules["good_plugin_module"].COUNT)
        """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['plugin_loss']", "1"]


def test_broken_plugin_warns_once_and_the_rest_works(tmp_path):
    _write_distribution(tmp_path, "broken_plugin", "import no_such_module_xyz\n", "broken_mod")
    _write_distribution(tmp_path, "good_plugin", """
        import kdod
        kdod.register_ocr("plugin_ocr")(lambda crops: [])
        """, "good_plugin_module")
    result = _run_python("""
        import kdod
        print(kdod.OCR_BACKENDS.list()); print(kdod.LOSSES.list())
        """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "'plugin_ocr'" in result.stdout
    assert result.stderr.count("kdod plugin 'broken_plugin'") == 1
    assert "No module named 'no_such_module_xyz'" in result.stderr


def test_kdod_exposes_the_registries():
    assert set(kdod.REGISTRIES) >= {"backbone", "loss", "ocr"}
    assert kdod.register_loss == kdod.LOSSES.register

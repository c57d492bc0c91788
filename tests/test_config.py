"""gin + absl plumbing: search paths, operative config, readable errors."""

import subprocess
import sys
from pathlib import Path

import gin
import pytest

from kdod import config
from kdod.registry import Registry

_registry = Registry("config_test")


@_registry.register("demo_schedule")
def demo_schedule(learning_rate=0.1, warmup_steps=10):
    return learning_rate, warmup_steps


@pytest.fixture(autouse=True)
def clean_gin():
    yield
    gin.clear_config()


def test_gin_file_found_by_path_and_by_name(tmp_path, monkeypatch):
    (tmp_path / "gin").mkdir()
    (tmp_path / "gin" / "schedule.gin").write_text("demo_schedule.learning_rate = 0.5\n")
    monkeypatch.chdir(tmp_path)
    expected = (tmp_path / "gin" / "schedule.gin").resolve()
    assert config.resolve_gin_file("gin/schedule.gin") == expected
    config.parse_gin(["schedule.gin"], ["demo_schedule.warmup_steps = 3"])
    assert demo_schedule() == (0.5, 3)


def test_missing_gin_file_suggests_a_name(tmp_path, monkeypatch):
    (tmp_path / "gin").mkdir()
    (tmp_path / "gin" / "schedule.gin").write_text("")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(config.ConfigError, match="Did you mean schedule.gin"):
        config.parse_gin(["schedul.gin"])


def test_typo_in_configurable_name_suggests_the_registered_one():
    with pytest.raises(config.ConfigError) as error:
        config.parse_gin([], ["demo_schedul.learning_rate = 0.5"])
    assert "No configurable matching 'demo_schedul'" in str(error.value)
    assert "Did you mean 'demo_schedule'" in str(error.value)


def test_typo_in_parameter_name_suggests_the_parameter():
    with pytest.raises(config.ConfigError, match="Did you mean 'warmup_steps'"):
        config.parse_gin([], ["demo_schedule.warmup_step = 5"])


def test_bad_value_syntax_is_a_config_error():
    with pytest.raises(config.ConfigError, match="gin:"):
        config.parse_gin([], ["demo_schedule.learning_rate = [0.1,"])


def test_operative_config_is_written(tmp_path):
    config.parse_gin([], ["demo_schedule.learning_rate = 0.25"])
    demo_schedule()
    path = config.write_operative_config(tmp_path / "run")
    assert "demo_schedule.learning_rate = 0.25" in path.read_text()


def test_entry_point_reports_gin_typo_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "kdod.train", f"--model_dir={tmp_path}",
         "--gin_param=input_pipelin.batch_size=4"], check=False, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 2
    assert "Did you mean 'input_pipeline'" in result.stderr
    assert "Traceback" not in result.stderr


def test_name_in_two_registries_asks_for_the_full_name():
    for kind in ("config_test_a", "config_test_b"):
        Registry(kind).register("ambiguous_rate")(lambda rate=0.1: rate)
    with pytest.raises(config.ConfigError, match=r"(?s)Ambiguous selector.*Write the full name"):
        config.parse_gin([], ["ambiguous_rate.rate = 0.5"])
    config.parse_gin([], ["kdod.config_test_a.ambiguous_rate.rate = 0.5"])



REPO_GIN = Path(__file__).resolve().parents[1] / "gin"


@pytest.mark.parametrize("recipe", sorted(str(p.relative_to(REPO_GIN))
                                          for p in REPO_GIN.rglob("*.gin")))
def test_every_shipped_recipe_parses(recipe):
    """A typo in a shipped recipe (a renamed loss setting, say) fails here, not mid-run."""
    config.parse_gin([str(REPO_GIN / recipe)])


def test_each_search_path_is_listed_once_from_the_repository(monkeypatch):
    monkeypatch.chdir(REPO_GIN.parent)  # ./gin is then the repository's gin/.
    with pytest.raises(config.ConfigError) as error:
        config.resolve_gin_file("no_such_recipe.gin")
    assert str(error.value).count(f"{REPO_GIN},") == 1


def test_evaluate_on_a_run_folder_that_does_not_exist_says_so(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kdod.evaluate",
                             f"--model_dir={tmp_path / 'nowhere'}"],
                            check=False, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert f"error: --model_dir={tmp_path / 'nowhere'} does not exist" in result.stderr
    assert "gin file" not in result.stderr and "Traceback" not in result.stderr

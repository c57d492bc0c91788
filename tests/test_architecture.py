"""The package's shape: no import cycles (lazy imports inside functions included), imports only
point down the layers of docs/design.md, and every module imports in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGES = ("kdod", "kdod_plugins", "tfds_builders")

# Lower layers never import higher ones; a module may import its own layer and every layer
# below. The first pattern that matches a module (a name or a package prefix) gives its layer.
LAYERS = (
    (0, ("kdod", "kdod.errors", "kdod.registry", "kdod.config", "kdod.files", "kdod.timing",
         "kdod.visualize", "kdod.train_step", "kdod.checkpoints")),
    (1, ("tfds_builders",)),
    (2, ("kdod.backbones", "kdod.data", "kdod.detection", "kdod.ocr", "kdod.metrics")),
    (3, ("kdod.distill",)),
    (4, ("kdod.train_lib", "kdod.eval_lib", "kdod.export_lib", "kdod.exported",
         "kdod.experiment", "kdod.train_ocr_lib", "kdod.cache_teacher_lib")),
    (5, ("kdod.benchmarks", "kdod_plugins")),
    (6, ("kdod.train", "kdod.evaluate", "kdod.export", "kdod.recognize", "kdod.to_tfrecord",
         "kdod.benchmark", "kdod.demo", "kdod.train_ocr", "kdod.cache_teacher",
         "kdod.pseudo_label_ocr")),
)


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.name.endswith("_test.py"):
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def _imported(node: ast.AST, module: str, is_package: bool, modules: dict) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # Relative: resolve against the importing module's package.
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    # `from pkg import sub` imports the submodule pkg.sub where there is one, else pkg.
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            for alias in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its source (functions included)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in _imported(node, name, path.name == "__init__.py", modules):
                    while target and target not in modules:
                        target = target.rpartition(".")[0]
                    # Python initializes a module's own packages before it anyway.
                    if target and not (name == target or name.startswith(target + ".")):
                        edges.add(target)
        graph[name] = edges
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done.
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = 1, path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node], _ = 2, path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer_of(module: str) -> int:
    matches = [(len(prefix), layer) for layer, prefixes in LAYERS for prefix in prefixes
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer of tests/test_architecture.py: add it"
    return max(matches)[1]


def test_the_cycle_finder_finds_a_cycle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles():
    cycle = _find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_imports_point_down_the_layers():
    upward = [f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
              for module, targets in import_graph().items() for target in targets
              if layer_of(target) > layer_of(module)]
    assert not upward, "\n".join(upward)


def test_tfds_builders_import_only_kdod_errors():
    graph = import_graph()
    outside = {f"{module} -> {target}" for module, targets in graph.items()
               if module.startswith("tfds_builders") for target in targets
               if not target.startswith("tfds_builders") and target not in ("kdod", "kdod.errors")}
    assert not outside, sorted(outside)


def _import_in_fresh_interpreter(names: list[str]) -> None:
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", script, *names], cwd=REPO, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]


def test_every_module_imports_in_a_fresh_interpreter():
    # Entry points each define their absl flags (some share names), so each gets its own process.
    entry_points = set(dict(LAYERS)[6])
    _import_in_fresh_interpreter(sorted(set(_modules()) - entry_points))
    for entry_point in sorted(entry_points):
        _import_in_fresh_interpreter([entry_point])

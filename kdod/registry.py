"""Name -> component registries, in the style of timm's model registry.

A component is registered with a decorator and is then configurable in gin under
its registered name::

        @kdod.register_loss("my_loss")
        def my_loss(student_out, teacher_out, batch, weight_by_score=True): ...

        # gin:  my_loss.weight_by_score = False

Built-in components live in modules that are imported lazily, at the first
lookup, so `import kdod` stays cheap (no TensorFlow). Third-party packages add
components through entry points in the group ``kdod.plugins``; those are
imported once, at the same moment, and a plugin that fails to import costs one
warning, never the rest of the library.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import gin
from absl import logging

from kdod.errors import KdodError

PLUGIN_GROUP = "kdod.plugins"

T = TypeVar("T")

_plugins_loaded = False


class UnknownComponentError(KdodError, KeyError):
    """A name that no registry entry matches; the message lists the closest names."""

    def __str__(self) -> str:  # KeyError would print the message with quotes.
        return str(self.args[0])


class Registry:
    """A named collection of components (functions or classes).

    Args:
        kind: what the entries are, used in messages and as the gin module
            (``kdod.<kind>``), e.g. "loss".
        builtin_modules: modules that register the built-in entries; imported at
            the first lookup.
    """

    def __init__(self, kind: str, builtin_modules: Iterable[str] = ()):
        self.kind = kind
        self._builtin_modules = tuple(builtin_modules)
        self._builtins_loaded = False
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: registers a function or class under `name` and in gin."""

        def decorator(component: T) -> T:
            key = name or component.__name__
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice ("
                                 f"{self._entries[key].__module__} and {component.__module__}).")
            configurable = gin.configurable(key, module=f"kdod.{self.kind}")(component)
            self._entries[key] = configurable
            return configurable

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """Returns the component registered as `name` (gin-configured)."""
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(self._unknown_message(name)) from None

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Looks up `name` and calls it."""
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style wildcard, sorted."""
        self._load()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"

    def _unknown_message(self, name: str) -> str:
        known = self.list()
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Known: {', '.join(known) or '(none)'}."

    def _load(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            for module in self._builtin_modules:
                importlib.import_module(module)
        load_plugins()


def load_plugins() -> None:
    """Imports every ``kdod.plugins`` entry point once; failures only warn."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # Set first: a plugin may look things up while importing.
    for entry_point in importlib.metadata.entry_points(group=PLUGIN_GROUP):
        try:
            entry_point.load()
        except Exception as error:  # noqa: BLE001 - any failure of third-party code.
            warnings.warn(
                    f"kdod plugin {entry_point.name!r} ({entry_point.value}) failed to import "
                    f"and is skipped: {type(error).__name__}: {error}",
                    RuntimeWarning,
                    stacklevel=2,
            )
        else:
            logging.debug("Loaded kdod plugin %s (%s).", entry_point.name, entry_point.value)


def load_all() -> None:
    """Imports every built-in component and plugin, e.g. before parsing gin files."""
    for registry in REGISTRIES.values():
        registry.list()


# Upper case: the lower-case names are the packages holding the built-in entries.
BACKBONES = Registry("backbone", ["kdod.backbones"])
NECKS = Registry("neck", ["kdod.detection.necks"])
LOSSES = Registry("loss", ["kdod.distill.losses"])
OCR_BACKENDS = Registry("ocr", ["kdod.ocr"])
# Loaders of teachers that are not kdod runs: classes with `can_load(path) -> bool` and
# `__init__(path)` (kdod.distill.teacher.load_teacher tries them in name order).
TEACHERS = Registry("teacher")

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (BACKBONES, NECKS, LOSSES, OCR_BACKENDS,
                                                          TEACHERS)}

register_backbone = BACKBONES.register
register_neck = NECKS.register
register_loss = LOSSES.register
register_ocr = OCR_BACKENDS.register
register_teacher = TEACHERS.register

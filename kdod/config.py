"""gin + absl plumbing shared by every kdod entry point (t5x gin_utils style).

Flags: ``--gin_file`` (repeatable), ``--gin_param`` (repeatable), ``--model_dir``.
A gin file is found as given, then by name in the search path: the current
directory, ``./gin``, the repository's ``gin/`` and the installed
``<prefix>/share/kdod/gin``. Errors in gin files end the program with a short
message (and a did-you-mean hint), not a traceback of gin internals.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging as std_logging
import math
import numbers
import operator
import os
import re
import sys
import tokenize
from collections.abc import Callable, Sequence
from pathlib import Path

import gin
from absl import app, flags, logging

from kdod import registry
from kdod.errors import KdodError

flags.DEFINE_multi_string("gin_file", [],
                          "gin file to load (repeatable); a path or a name in gin/.")
flags.DEFINE_multi_string(
    "gin_param", [], "gin binding applied after the files (repeatable), e.g. 'train.steps = 100'.")
flags.DEFINE_string("model_dir", None, "Directory for checkpoints, logs and the operative config.")

OPERATIVE_CONFIG = "operative_config.gin"  # What the run used, with defaults.
FULL_CONFIG = "config.gin"  # Everything the run was given, for evaluate/export to rebuild it.


# Modules whose gin configurables any config may bind (they import the rest). Entry-point
# modules hold none: run as __main__ they would register their configurables twice.
CONFIGURABLE_MODULES = ("kdod.train_lib", "kdod.eval_lib", "kdod.export_lib",
                        "kdod.distill.distiller", "kdod.train_ocr_lib")


class ConfigError(KdodError):
    """A configuration the user wrote cannot be used; the message says why."""


def check_integer(binding: str, value: object, minimum: int = 1,
                  maximum: int | None = None) -> None:
    """A ConfigError naming the gin `binding` unless `value` is an integer in
    [`minimum`, `maximum`]."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        wanted = (f"an integer from {minimum} to {maximum}" if maximum is not None
                  else "a positive integer" if minimum == 1 else f"an integer >= {minimum}")
        raise ConfigError(f"{binding} must be {wanted}, got {value!r}.")


def check_number(binding: str, value: object, *, above: float | None = None,
                 at_least: float | None = None, below: float | None = None,
                 at_most: float | None = None) -> None:
    """A ConfigError naming the gin `binding` unless `value` is a finite number within the
    bounds given (`above` and `below` exclude the bound, `at_least` and `at_most` include it)."""
    bounds = [(sign, bound, holds) for sign, bound, holds in (
        (">", above, operator.gt), (">=", at_least, operator.ge), ("<", below, operator.lt),
        ("<=", at_most, operator.le)) if bound is not None]
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not all(holds(value, bound) for _, bound, holds in bounds)):
        wanted = " and ".join(f"{sign} {bound}" for sign, bound, _ in bounds)
        raise ConfigError(f"{binding} must be a {'number ' + wanted if wanted else 'finite number'}"
                          f", got {value!r}.")


def gin_search_paths() -> list[Path]:
    """Folders where gin files are looked up by name, in order, each once (run from the
    repository, ./gin is the repository's gin/)."""
    cwd = Path.cwd()
    folders = [cwd, cwd / "gin", Path(__file__).resolve().parents[1] / "gin",
               Path(sys.prefix) / "share" / "kdod" / "gin"]
    return list(dict.fromkeys(folder.resolve() for folder in folders))


def available_gin_files() -> list[str]:
    """Names of the gin files in the search path (relative to their folder)."""
    names = set()
    cwd = Path.cwd().resolve()  # Not searched: it holds runs, whose config.gin are no recipes.
    for folder in gin_search_paths():
        if folder != cwd and folder.is_dir():
            names.update(str(p.relative_to(folder)) for p in folder.rglob("*.gin"))
    return sorted(names)


def resolve_gin_file(name: str) -> Path:
    """Returns the path of a gin file given by path or by name."""
    candidates = [Path(name)] + [folder / name for folder in gin_search_paths()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    known = available_gin_files()
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    raise ConfigError(f"gin file {name!r} not found in {', '.join(map(str, gin_search_paths()))}."
                      f"{hint} Available: {', '.join(known) or '(none)'}.")


class _QuietGinProbes(std_logging.Filter):
    """Drops gin's "Path not found" errors, logged for every search path an include tries
    before the one that holds the file; a file that is missing everywhere still fails."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Path not found:", "system_path_file_exists:"))


def parse_gin(gin_files: Sequence[str] = (), gin_params: Sequence[str] = ()) -> None:
    """Loads every configurable and registered component, then the gin files and bindings."""
    root = std_logging.getLogger()
    if not any(isinstance(f, _QuietGinProbes) for f in root.filters):
        root.addFilter(_QuietGinProbes())
    for module in CONFIGURABLE_MODULES:
        importlib.import_module(module)
    registry.load_all()
    paths = [str(resolve_gin_file(f)) for f in gin_files]
    for folder in gin_search_paths():
        gin.add_config_file_search_path(str(folder))  # For `include` lines inside files.
    try:
        gin.parse_config_files_and_bindings(paths, gin_params, finalize_config=False)
    except tokenize.TokenError as error:  # An unclosed bracket or quote runs to the end.
        raise ConfigError(f"gin: a bracket or quote is never closed ({error.args[0]}).") from None
    except KeyError as error:  # Two registries hold the name: gin needs the module too.
        message = str(error).replace('"', "")  # KeyError quotes its message.
        raise ConfigError(f"gin: {message}\nWrite the full name, e.g. "
                          f"kdod.backbone.mobilenet_v2.alpha = 0.5.") from None
    except (ValueError, SyntaxError, NameError, AttributeError, TypeError, OSError) as error:
        raise ConfigError(f"gin: {error}{_did_you_mean(str(error))}") from None


def _did_you_mean(message: str) -> str:
    """A hint for gin's unknown-configurable and unknown-parameter errors."""
    if match := re.search(r"No configurable matching '([^']+)'", message):
        known = sorted({name for selector, _ in gin.config._REGISTRY.items()
                        for name in (selector, selector.rsplit(".", 1)[-1])})
        close = difflib.get_close_matches(match.group(1), known, n=3, cutoff=0.6)
    elif match := re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'",
                            message):
        configurable = gin.config._REGISTRY.get_match(match.group(1))
        params = list(inspect.signature(configurable.wrapped).parameters) if configurable else []
        close = difflib.get_close_matches(match.group(2), params, n=3, cutoff=0.5)
        if not close and params:
            return f"\nIts parameters: {', '.join(params)}."
    else:
        return ""
    return f"\nDid you mean {' or '.join(map(repr, close))}?" if close else ""


def write_operative_config(model_dir: str | Path) -> Path:
    """Writes and logs the gin config actually used, so the run can be reproduced.

    Also writes every binding given (config.gin): the operative config lacks
    bindings for code the run did not call, such as the evaluation pipeline.
    """
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FULL_CONFIG).write_text(gin.config_str())
    path = folder / OPERATIVE_CONFIG
    text = gin.operative_config_str()
    path.write_text(text)
    logging.info("Operative gin config (written to %s):\n%s", path, text)
    return path


def parse_flags_gin() -> None:
    """Parses the gin files and bindings given on the command line."""
    parse_gin(flags.FLAGS.gin_file, flags.FLAGS.gin_param)


def run_gin_files(model_dir: str) -> list[str]:
    """The gin files that rebuild the trained run in `model_dir`: --gin_file when given, else
    the run's config.gin. A model_dir that is no training run is a ConfigError saying so."""
    folder = Path(model_dir)
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"--model_dir={model_dir} {state}: give the folder of a training run.")
    if flags.FLAGS.gin_file:
        return flags.FLAGS.gin_file
    if not (folder / FULL_CONFIG).is_file():
        raise ConfigError(f"--model_dir={model_dir} is not a training run (it has no "
                          f"{FULL_CONFIG}): train into it first, or pass the model's --gin_file.")
    return [str(folder / FULL_CONFIG)]


def training_model_dir(argv: list[str]) -> str:
    """--model_dir of a training entry point, checked (given, a folder or new), after refusing
    stray arguments."""
    if len(argv) > 1:
        raise ConfigError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS.model_dir:
        raise ConfigError("--model_dir is required: where checkpoints and logs go.")
    check_output_folder("--model_dir", flags.FLAGS.model_dir)
    return flags.FLAGS.model_dir


def check_output_folder(flag: str, folder: str | Path) -> None:
    """A ConfigError naming `flag` unless `folder` is a folder kdod can write in, or can create
    (no file in the way, the nearest existing folder writable)."""
    for path in [Path(folder), *Path(folder).absolute().parents]:
        if not path.exists():
            continue
        if not path.is_dir():
            raise ConfigError(f"{flag}: {path} is a file, not a folder.")
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{flag}: {path} is not writable.")
        return


# gin appends a line per configurable an exception passes through: context for a traceback,
# noise under a message that names the binding already.
_GIN_CALL_CONTEXT = re.compile(r"\n  In call to configurable .*")
# gin's words for a configurable called without a required argument (a TypeError).
_GIN_UNBOUND = re.compile(r"No values supplied by Gin or caller for arguments: \[(?P<names>[^]]*)\]"
                          r".*?In call to configurable '(?P<configurable>[^']+)'", re.DOTALL)


def user_message(error: Exception) -> str | None:
    """The message of an error the user can fix, or None for a bug (shown as a traceback): a
    KdodError's, or gin's for a required argument no binding gives."""
    if isinstance(error, KdodError):
        return _GIN_CALL_CONTEXT.sub("", str(error))
    if isinstance(error, TypeError) and (unbound := _GIN_UNBOUND.search(str(error))):
        names = unbound["names"].replace("'", "").split(", ")
        return (f"gin: {unbound['configurable']} needs {', '.join(names)}; bind "
                f"{'it' if len(names) == 1 else 'them'}, e.g. "
                f"{unbound['configurable']}.{names[0]} = ...")
    return None


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run` with user errors reported as one readable message (exit status 2)."""

    def guarded_main(argv: list[str]) -> None:
        try:
            main(argv)
        except (KdodError, TypeError) as error:
            if (message := user_message(error)) is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)

    app.run(guarded_main)

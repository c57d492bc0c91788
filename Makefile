# kdod: `make demo` runs the main job on synthetic plates, `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install test demo benchmark clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

test: $(INSTALLED)
	$(PY) -m pytest -q

demo: $(INSTALLED)
	$(PY) -m kdod.demo

benchmark: $(INSTALLED)
	$(PY) -m kdod.benchmark data

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

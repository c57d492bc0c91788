# kdod: `make demo` runs the main job on synthetic plates, `make test` runs the tests,
# `make lint` checks the code with ruff.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: install test lint demo benchmark clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# The tesseract OCR engine is a system program; without it its tests skip, saying why.
	@if ! command -v tesseract >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && apt-get install -y -qq tesseract-ocr) \
	      || echo "warning: apt-get could not install tesseract-ocr; tesseract tests will skip."; \
	  else \
	    echo "warning: tesseract-ocr not installed (needs apt-get as root); tesseract tests will skip."; \
	  fi; \
	fi
	touch $@

test: $(INSTALLED)
	$(PY) -m pytest -q

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .

demo: $(INSTALLED)
	$(PY) -m kdod.demo

benchmark: $(INSTALLED)
	$(PY) -m kdod.benchmark data

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

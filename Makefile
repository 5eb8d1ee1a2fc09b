# scomics-ext developer entry points. Each target creates/uses a local virtual environment.
# `make demo`  - run all tools on built-in simulated data (results, figures, metrics.json in demo_output/)
# `make test`  - run the default test suite (slow benchmark-style tests excluded)
# `make docs`  - build the sphinx documentation (warnings are errors; SCOMICS_DOCS_OFFLINE= enables intersphinx)

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.scomics-installed
# dev/CI pin: the CPU wheel of torch (the package itself only states a lower bound)
TORCH_PIN ?= torch==2.13.0
DEMO_OUT ?= demo_output

.PHONY: venv demo test test-all test-slow docs lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$(TORCH_PIN)"
	$(PY) -m pip install -e ".[test,doc]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scomics-ext demo --out $(DEMO_OUT)

test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

test-slow: $(STAMP)
	$(PY) -m pytest -m slow

docs: $(STAMP)
	SCOMICS_DOCS_OFFLINE=$${SCOMICS_DOCS_OFFLINE-1} $(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf docs/_build docs/api/generated $(DEMO_OUT) .pytest_cache .ruff_cache

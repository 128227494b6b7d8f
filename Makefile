# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
export BIOSCAN_HOME ?= $(CURDIR)/.bioscan
export DAGSTER_HOME ?= $(BIOSCAN_HOME)/dagster

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

.PHONY: setup demo test lint ui
setup: $(VENV)/.installed

demo: setup
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster job execute -m bioscan_assets.definitions -j demo

test: setup
	./scripts/ensure-chromium.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest

ui: setup
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster dev -m bioscan_assets.definitions

# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# PYTHON must be 3.11 or 3.12 (pyproject's requires-python); e.g. `make demo PYTHON=python3.11`.
PYTHON ?= python3
VENV ?= .venv
export BIOSCAN_HOME ?= $(CURDIR)/.bioscan
export DAGSTER_HOME ?= $(BIOSCAN_HOME)/dagster

# The demo needs the runtime only; tests add torch, transformers, playwright and friends.
$(VENV)/.runtime: pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v < (3, 13) else f"bioscan needs Python 3.11 or 3.12; {sys.executable} is {v[0]}.{v[1]}. Pass one: make $(MAKECMDGOALS) PYTHON=python3.11")'
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --progress-bar on -e .
	touch $@

$(VENV)/.test: $(VENV)/.runtime
	$(VENV)/bin/pip install --progress-bar on -e '.[test]'
	touch $@

.PHONY: setup demo test lint ui
setup: $(VENV)/.runtime

# Ends by saying where the reports and profiles are (also after a failed run: what exists).
demo: $(VENV)/.runtime
	mkdir -p $(DAGSTER_HOME)
	$(VENV)/bin/dagster job execute -m bioscan_assets.definitions -j demo; status=$$?; \
	echo; $(VENV)/bin/bioscan outputs; \
	echo "Runs, logs and metadata: make ui, then http://127.0.0.1:3000"; exit $$status

test: $(VENV)/.test
	./scripts/ensure-chromium.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/dg check defs
	$(VENV)/bin/dg list defs --json > /dev/null
	$(VENV)/bin/pytest

ui: $(VENV)/.runtime
	mkdir -p $(DAGSTER_HOME)
	# Stamp the SQLite schema in one process first: webserver, daemon and code server racing to
	# create it can leave two alembic heads for good (dagster#27390).
	$(VENV)/bin/dagster instance migrate
	$(VENV)/bin/dagster dev -m bioscan_assets.definitions

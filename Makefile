# The two commands of the quick start: `make serve` and `make test`. Both are idempotent.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
GATEWAY := $(BIN)/gateway
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: serve test test-fast lint format install install-test clean-venv soak

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# The stamp is newer than pyproject.toml once the install succeeded; a second run skips it.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install -q -e '.[test,dev]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

serve: install
	$(GATEWAY) models fetch
	$(GATEWAY) db upgrade
	$(GATEWAY) demo
	$(GATEWAY) serve

test: install-test
	$(GATEWAY) models fetch
	$(BIN)/pytest

test-fast: install-test
	$(GATEWAY) models fetch
	$(BIN)/pytest -m "not slow"

# The soak (bench/soak.py): the embedded engine under steady load for SOAK_SECONDS (default 600),
# then RSS and KV blocks against where they started; the last line is JSON (docs/reliability.md).
SOAK_SECONDS ?= 600
soak: install-test
	$(GATEWAY) models fetch
	SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/python bench/soak.py

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-venv:
	rm -rf $(VENV)

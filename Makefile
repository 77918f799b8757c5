# One set of commands for developers, hooks and CI alike.
#   make run    create .venv, install, run the service with config/wirewatch.yaml
#   make test   create .venv with the dev dependencies, run the whole test suite
#   make lint   ruff + mypy (strict on monitor/ and workers/)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= config/wirewatch.yaml
PIP    := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: run test lint format install install-dev clean chromium

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "wirewatch needs Python 3.11 or newer (set PYTHON=python3.x)")'
	$(PYTHON) -m venv $(VENV)

# Versions are pinned by constraints.txt; the stamp files re-install when either changes.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) install -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -c constraints.txt -e '.[dev]'
	@touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/wirewatch --config $(CONFIG) run

# The dashboard test drives Debian's chromium through playwright (no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || [ -x "$${WIREWATCH_CHROMIUM:-}" ] || { \
	  [ "$$(id -u)" = 0 ] && export DEBIAN_FRONTEND=noninteractive && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }; } || \
	  echo "chromium is missing and cannot be installed here: tests/test_dashboard.py will fail (WIREWATCH_SKIP_BROWSER=1 skips it)"

test: $(VENV)/.installed-dev chromium
	$(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .wirewatch .mypy_cache .ruff_cache .pytest_cache

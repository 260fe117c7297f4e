# Run `make` or `make help` to list the targets.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python

.DEFAULT_GOAL := help
.PHONY: help install test bench run clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the project with its test tools

test: install ## run the test suite
	$(PY) -m pytest

bench: install ## run the benchmark (prints a table, writes bench/results/*.json)
	$(PY) -m bench

run: install ## run the server in the foreground (FS_MODE, FS_POOL, ... apply)
	$(PY) -m server

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache build *.egg-info

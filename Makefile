# Run `make` or `make help` to list the targets.
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.DEFAULT_GOAL := help
.PHONY: help install test bench run images images-offline up down clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the project with its test tools

test: install ## run the test suite
	$(PY) -m pytest

bench: install ## run the benchmarks (prints tables, writes bench/results/*.json)
	$(PY) -m bench
	$(PY) -m bench.locust_capacity

run: install ## run the server in the foreground (FS_MODE, FS_POOL, ... apply)
	$(PY) -m server

images: ## build the server and Locust images (python:3.12-slim + PyPI)
	$(COMPOSE) build

images-offline: ## build the images with no registry and no PyPI in the build (see README)
	compose/build-offline.sh

up: ## docker compose up: server + Locust UI on http://localhost:8089
	$(COMPOSE) up

down: ## stop the compose project and remove its volumes
	$(COMPOSE) down -v

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache build *.egg-info

# Run `make` or `make help` to list the targets.
VENV   ?= .venv
BACKEND ?= local
REPEAT  ?= 3
PYTHON ?= python3
PY      = $(VENV)/bin/python
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.DEFAULT_GOAL := help
.PHONY: help install test test-fast capacity bench run images images-offline up down scenario matrix report course k8s lint clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed ## create .venv and install the project with its test tools

test: install ## run the test suite
	$(PY) -m pytest

test-fast: install ## the quick tier: unit tests, no server or other process (under a minute)
	$(PY) -m pytest -m "unit and not slow"

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

scenario: install ## run scenarios: make scenario NAME="thread-pool5 process-pool5" [BACKEND=local|compose|k8s]
	@test -n "$(NAME)" || { echo 'usage: make scenario NAME="name ..." (see: $(PY) -m scenarios list)'; exit 2; }
	$(PY) -m scenarios run $(NAME) --backend $(BACKEND)

matrix: install ## run every scenario of scenarios.yaml into results/<timestamp>/ [BACKEND=local]
	$(PY) -m scenarios run --all --backend $(BACKEND)

capacity: install ## capacity searches, both modes x pools 1/5/50/200, REPEAT times (default 3), then the report
	$(PY) -m scenarios run 'capacity-*' --repeat $(REPEAT) --backend local
	$(PY) -m scenarios report

report: install ## charts, report.html, report.md for RESULTS=results/<timestamp> (default: newest)
	$(PY) -m scenarios report $(RESULTS)

course: install ## the course's transfer matrix into results/course/<timestamp>/ [ARGS=--quick]
	$(PY) -m scenarios course $(ARGS)

k8s: install ## regenerate k8s/overlays/ from scenarios.yaml
	$(PY) -m scenarios k8s

lint: install ## ruff, scenarios.yaml validation, k8s overlays up to date
	$(PY) -m ruff check .
	$(PY) -m scenarios validate
	$(PY) -m scenarios k8s --check

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache build *.egg-info

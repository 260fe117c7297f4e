# Run `make` or `make help` to list the targets.
VENV   ?= .venv
BACKEND ?= local
REPEAT  ?= 3
PYTHON ?= python3
PY      = $(VENV)/bin/python
# the free-threaded venv: FT_PYTHON names an interpreter you have (e.g. from
# `uv python find 3.14t`); empty, tools/build-python-ft.sh builds FT_VERSION once
VENV_FT    ?= .venv-ft
FT_PYTHON  ?=
FT_VERSION ?= 3.13
PY_FT       = $(VENV_FT)/bin/python
COMPOSE = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.DEFAULT_GOAL := help
.PHONY: help install test test-fast venv-ft test-ft capacity bench run images images-offline image-ft up down scenario matrix report course k8s lint clean

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

$(VENV_FT)/.installed: pyproject.toml tools/ft_requirements.py tools/build-python-ft.sh
	@python="$(FT_PYTHON)"; \
	if [ -z "$$python" ]; then python=$$(tools/build-python-ft.sh $(FT_VERSION)) || exit 1; fi; \
	command -v "$$python" >/dev/null || { echo "FT_PYTHON=$$python: no such interpreter"; exit 1; }; \
	"$$python" -c 'import sys, sysconfig; sysconfig.get_config_var("Py_GIL_DISABLED") == 1 or sys.exit(f"{sys.executable}: not a free-threaded build (./configure --disable-gil)")' || exit 1; \
	rm -rf $(VENV_FT); echo "$$python -m venv $(VENV_FT)"; "$$python" -m venv $(VENV_FT)
	$(PY_FT) -m pip install --quiet --only-binary=:all: $$($(PY_FT) tools/ft_requirements.py)
	echo "$(CURDIR)" > "$$($(PY_FT) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/fileserver-loadlab.pth"
	touch $@

venv-ft: $(VENV_FT)/.installed ## .venv-ft: the server's dependencies on a free-threaded CPython (FT_PYTHON=..., or built once)

test-ft: venv-ft ## the server, client and wire tests on the free-threaded interpreter, both modes
	$(PY_FT) -m pytest tests/server tests/client tests/wire -m "not docker and not browser"

bench: install ## run the benchmarks (prints tables, writes bench/results/*.json)
	$(PY) -m bench
	$(PY) -m bench.locust_capacity

run: install ## run the server in the foreground (FS_MODE, FS_POOL, ... apply)
	$(PY) -m server

images: ## build the server and Locust images (python:3.12-slim + PyPI)
	$(COMPOSE) build

images-offline: ## build the images with no registry and no PyPI in the build (see README)
	compose/build-offline.sh

image-ft: venv-ft ## the server image on .venv-ft's free-threaded CPython (fileserver-lab/server-ft), offline
	compose/build-server-ft.sh

up: ## docker compose up: server + Locust UI on http://localhost:8089
	$(COMPOSE) up

.PHONY: up-monitoring
up-monitoring: ## docker compose up with Prometheus on http://127.0.0.1:9090 (compose/monitoring.yml)
	$(COMPOSE) -f compose/docker-compose.yml -f compose/monitoring.yml up

down: ## stop the compose project (Prometheus too, if up-monitoring started it) and remove its volumes
	$(COMPOSE) -f compose/docker-compose.yml -f compose/monitoring.yml down -v

scenario: install ## run scenarios: make scenario NAME="thread-pool5 process-pool5" [BACKEND=local|compose|k8s]
	@test -n "$(NAME)" || { echo 'usage: make scenario NAME="name ..." (see: $(PY) -m scenarios list)'; exit 2; }
	$(PY) -m scenarios run $(NAME) --backend $(BACKEND)

matrix: install $(if $(filter local,$(BACKEND)),venv-ft) ## run every scenario of scenarios.yaml into results/<timestamp>/ [BACKEND=local]
	$(PY) -m scenarios run --all --backend $(BACKEND)

capacity: install venv-ft ## capacity searches, thread/process/free-threaded thread x pools 1/5/50/200, REPEAT times (default 3), then the report
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
	rm -rf $(VENV) $(VENV_FT) .pytest_cache build *.egg-info

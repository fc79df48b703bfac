# Artisan — every target creates the virtualenv (.venv) when it is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-deps
PYTEST_ARGS ?=

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*## "} {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[operator,ensemble,trainer,dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install Artisan with every extra (torch 2.13.0 CPU)

$(SYSTEM_STAMP): | $(STAMP)
	@if ! command -v promtool >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "prometheus (promtool) is missing: install Debian's 'prometheus' package" >&2; exit 1; fi; \
	fi
	@touch $(SYSTEM_STAMP)

system-deps: $(SYSTEM_STAMP) ## install system packages the tests use (Debian prometheus + promtool)

demo: $(STAMP) ## run the embedded sandbox: emulated API + operator + samples, prints the result
	$(BIN)/artisan sandbox demo

run: $(STAMP) ## run the operator against the current kubeconfig
	$(BIN)/artisan-operator

lint: $(STAMP) ## ruff + import-linter layer contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP) ## mypy --strict on our packages
	$(BIN)/mypy

crds: $(STAMP) ## regenerate crds/*.yaml (and the chart's copy) from the pydantic API models
	$(PY) -m artisan_operator.crdgen --out crds --chart charts/artisan

verify-crds: $(STAMP) ## fail when crds/ is stale against the API models
	$(PY) -m artisan_operator.crdgen --out crds --chart charts/artisan --check

chart-lint: $(STAMP) ## helm lint --strict and render the chart (helm-python-sdk, offline)
	$(PY) -m pytest -q tests/chart

test: $(STAMP) $(SYSTEM_STAMP) lint typecheck verify-crds ## set up, then run every check and the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP) ## run the benchmarks in bench/ (not part of make test)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b; done

clean: ## remove caches (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache demo-report

.PHONY: help install system-deps demo run lint typecheck crds verify-crds chart-lint test bench clean

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

demo: $(STAMP) ## the end-to-end story on this machine (local processes, Prometheus if installed) → demo-report/
	$(BIN)/artisan sandbox demo --story full

demo-samples: $(STAMP) ## the foundation check: emulated API + operator + samples (simulated runtime)
	$(BIN)/artisan sandbox demo --story samples

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

# Runbooks: thin aliases of `kubectl artisan ...` for people used to the seeds' make targets.
# Variables: NAME=<object>, NS=<namespace> (default: the context's), and per target MODE/FOR/STEP.
KA = $(BIN)/artisan
KA_NS = $(if $(NS),-n $(NS),)

runbook-status: $(STAMP) ## kubectl artisan status KIND/NAME --watch (REF=canary/x, TIMEOUT=300)
	$(KA) status $(REF) --watch --timeout $(or $(TIMEOUT),300) $(KA_NS)

runbook-promote: $(STAMP) ## promote Canary NAME (FULL=1: at once)
	$(KA) promote $(NAME) $(if $(FULL),--full,) $(KA_NS)

runbook-abort: $(STAMP) ## abort Canary NAME
	$(KA) abort $(NAME) $(KA_NS)

runbook-downshift: $(STAMP) ## downshift ModelPin NAME to MODE for FOR (e.g. MODE=fast FOR=10m)
	$(KA) downshift $(NAME) --to $(MODE) --for $(FOR) $(KA_NS)

runbook-emergency-stop: $(STAMP) ## scale ensembles to 0 and suspend TrainingRuns in NS (reversible)
	$(KA) emergency-stop $(KA_NS)

runbook-resume: $(STAMP) ## undo runbook-emergency-stop exactly
	$(KA) resume $(KA_NS)

runbook-health-check: $(STAMP) ## health of ModelPin NAME's ensemble pods (URL=... for a port-forward)
	$(KA) health-check $(NAME) $(if $(URL),--url $(URL),) $(KA_NS)

runbook-cache-clear: $(STAMP) ## clear ModelPin NAME's response cache (ARTISAN_ENSEMBLE_ADMIN_TOKEN, URL=...)
	$(KA) cache clear $(NAME) $(if $(URL),--url $(URL),) $(KA_NS)

runbook-rollback: $(STAMP) ## restart TrainingRun NAME from checkpoint STEP (a ModelPin goes back with runbook-undo)
	$(KA) rollback trainingrun $(NAME) --to-checkpoint $(STEP) $(KA_NS)

runbook-undo: $(STAMP) ## ModelPin NAME back to its previous pins (TO=<revision>; PRINT=1: the manifest for git)
	$(KA) undo $(NAME) $(if $(TO),--to-revision $(TO),) $(if $(PRINT),--print,) $(KA_NS)

runbook-retry: $(STAMP) ## Canary NAME: run an aborted rollout again (or re-measure Inconclusive metrics)
	$(KA) retry $(NAME) $(KA_NS)

runbook-get: $(STAMP) ## the resources as trees of their children (KIND=tr|mpin|cny|abx, NAME=...)
	$(KA) get $(KIND) $(NAME) $(KA_NS)

runbook-validate: $(STAMP) ## validate custom resources offline (FILES=..., default configs/samples/)
	$(KA) validate -f $(or $(FILES),configs/samples/)

runbook-metrics-check: $(STAMP) ## key series of the operator and the ensemble (OPERATOR_URL, ENSEMBLE_URL or PIN=<ModelPin>)
	$(KA) metrics-check $(if $(OPERATOR_URL),--operator-url $(OPERATOR_URL),) \
		$(if $(ENSEMBLE_URL),--ensemble-url $(ENSEMBLE_URL),) $(if $(PIN),--model-pin $(PIN),) $(KA_NS)

# The seeds' names of the same runbooks.
runbook-canary-promote: runbook-promote ## seeds' name of runbook-promote

runbook-pin-update: $(STAMP) ## ModelPin NAME: pin ROLE to REVISION (MODEL_NAME and SOURCE to add a role)
	$(KA) pin $(NAME) --role $(ROLE) --revision $(REVISION) $(if $(MODEL_NAME),--model-name $(MODEL_NAME),) \
		$(if $(SOURCE),--source $(SOURCE),) $(KA_NS)

runbook-restart-workers: $(STAMP) ## restart ModelPin NAME's ensemble pods (a TrainingRun: from its newest checkpoint)
	$(KA) restart $(NAME) $(KA_NS)

runbook-clear-cache: runbook-cache-clear ## seeds' name of runbook-cache-clear

clean: ## remove caches (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache demo-report .cache/artisan-demo

.PHONY: help install system-deps demo demo-samples run lint typecheck crds verify-crds chart-lint test bench clean \
	runbook-status runbook-promote runbook-abort runbook-downshift runbook-emergency-stop \
	runbook-resume runbook-health-check runbook-cache-clear runbook-rollback runbook-undo runbook-retry \
	runbook-get runbook-validate runbook-metrics-check runbook-canary-promote runbook-pin-update \
	runbook-restart-workers runbook-clear-cache

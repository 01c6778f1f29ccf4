# Every target runs from a fresh checkout: `setup` makes the virtualenv, `controlplane` builds the
# real Kubernetes binaries and `prometheus` promtool and the prometheus-operator CRDs (cached
# under ~/.cache/wmco, keyed by version).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup controlplane prometheus lint unit integration e2e test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

controlplane: setup
	hack/controlplane/build.sh

# promtool and the prometheus-operator CRDs (ServiceMonitor, PrometheusRule), from their Go modules.
prometheus:
	hack/prometheus/build.sh

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: setup prometheus
	$(BIN)/pytest tests -m "not integration and not e2e" $(PYTEST_ARGS)

integration: setup controlplane prometheus
	$(BIN)/pytest tests -m "integration" $(PYTEST_ARGS)

e2e: setup controlplane
	$(BIN)/pytest tests -m "e2e" $(PYTEST_ARGS)

test: lint controlplane prometheus
	$(BIN)/pytest tests $(PYTEST_ARGS)

demo: setup controlplane
	$(BIN)/wmco sandbox demo

clean:
	rm -rf $(VENV) .sandbox .controlplane .pytest_cache .mypy_cache .ruff_cache

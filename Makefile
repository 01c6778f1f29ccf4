# Every target runs from a fresh checkout: `setup` makes the virtualenv, `controlplane` builds the
# real Kubernetes binaries, `payload` the real Windows payload, `prometheus` promtool and the
# prometheus-operator CRDs (all cached under ~/.cache/wmco, keyed by version; a cold payload build
# takes about ten minutes on 2 cores, a warm one seconds).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup controlplane payload prometheus bundle bundle-validator lint unit integration e2e test test-payload demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

controlplane: setup
	hack/controlplane/build.sh

payload:
	hack/payload/build.sh

# The OLM bundle, generated from deploy/overlays/openshift and README.md (never edited by hand).
bundle: setup controlplane
	$(BIN)/python hack/bundle/generate.py

# The operator framework's bundle validator (github.com/operator-framework/api), cached by version.
bundle-validator:
	hack/bundle/build-validator.sh

# promtool and the prometheus-operator CRDs (ServiceMonitor, PrometheusRule), from their Go modules.
prometheus:
	hack/prometheus/build.sh

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/mypy benchmarks
	$(BIN)/lint-imports

unit: setup prometheus
	$(BIN)/pytest tests -m "not integration and not e2e and not payload" $(PYTEST_ARGS)

integration: setup controlplane bundle-validator prometheus
	$(BIN)/pytest tests -m "integration" $(PYTEST_ARGS)

e2e: setup controlplane payload
	$(BIN)/pytest tests -m "e2e" $(PYTEST_ARGS)

test-payload: setup controlplane payload
	$(BIN)/pytest tests -m "payload" $(PYTEST_ARGS)

# Slow builds first (cached by version), so that no test waits on one.
test: lint controlplane payload bundle-validator prometheus
	$(BIN)/pytest tests $(PYTEST_ARGS)

demo: setup controlplane
	$(BIN)/wmco sandbox demo

clean:
	rm -rf $(VENV) .sandbox .controlplane .pytest_cache .mypy_cache .ruff_cache

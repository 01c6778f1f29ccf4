# Every target runs from a fresh checkout: `setup` makes the virtualenv, `controlplane` builds the
# real Kubernetes binaries (cached under ~/.cache/wmco, keyed by version).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup controlplane bundle bundle-validator lint unit integration e2e test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

controlplane: setup
	hack/controlplane/build.sh

# The OLM bundle, generated from deploy/overlays/openshift and README.md (never edited by hand).
bundle: setup controlplane
	$(BIN)/python hack/bundle/generate.py

# The operator framework's bundle validator (github.com/operator-framework/api), cached by version.
bundle-validator:
	hack/bundle/build-validator.sh

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest tests -m "not integration and not e2e" $(PYTEST_ARGS)

integration: setup controlplane
	$(BIN)/pytest tests -m "integration" $(PYTEST_ARGS)

e2e: setup controlplane
	$(BIN)/pytest tests -m "e2e" $(PYTEST_ARGS)

test: lint controlplane
	$(BIN)/pytest tests $(PYTEST_ARGS)

demo: setup controlplane
	$(BIN)/wmco sandbox demo

clean:
	rm -rf $(VENV) .sandbox .controlplane .pytest_cache .mypy_cache .ruff_cache

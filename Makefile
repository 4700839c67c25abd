# The template's two commands: `make demo` and `make test`. Each sets itself up on first run.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
PROJECT_LOCK := {{cookiecutter.project_slug}}/requirements-dev.lock
# The generated Lambda targets python3.12 or 3.13; develop on one when this machine has it
# (a pyenv install counts), otherwise on any Python 3.11 or newer.
PYTHON ?= $(shell for candidate in python3.12 python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[23].*/bin/python3 2>/dev/null) python3; do \
	"$$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo "$$candidate"; break; }; done)

DEMO_DIR := build/demo
DEMO_PROJECT := $(DEMO_DIR)/product-recommendations
COUNT ?= 300
# Test processes: the slow tier runs a dozen baked projects' suites, which mostly wait on queue
# timeouts, so three at a time keep a 2-core CI machine busy without starving them.
TEST_WORKERS ?= 3

.PHONY: help demo test test-fast clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# One environment serves the template's tests and every project they bake: the generated
# project's pinned tools plus cookiecutter.
$(VENV)/.installed: requirements-test.lock $(PROJECT_LOCK)
	@test -n "$(PYTHON)" || { echo "Python 3.11+ not found; install python3.12" >&2; exit 1; }
	@echo "Creating $(VENV) with $(PYTHON) (first run only)..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r '$(PROJECT_LOCK)' -r requirements-test.lock
	@touch $@

demo: $(VENV)/.installed ## Bake a project with the defaults into build/demo and run its local pipeline (COUNT=300)
	rm -rf $(DEMO_DIR)
	$(PY) -m cookiecutter --no-input --output-dir $(DEMO_DIR) .
	$(MAKE) -C $(DEMO_PROJECT) local VENV=$(abspath $(VENV)) COUNT=$(COUNT)

test: $(VENV)/.installed ## Run the template's whole test suite (bakes projects and runs their suites)
	$(PY) -m ruff check hooks tests
	$(PY) -m ruff format --check hooks tests
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

test-fast: $(VENV)/.installed ## The template tests without running each baked project's own suite
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow"

clean: ## Remove the virtual environment and build/
	rm -rf $(VENV) build

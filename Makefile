# The template's two commands: `make demo` and `make test`. Each sets itself up on first run.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
PROJECT_LOCK := {{cookiecutter.project_slug}}/requirements-dev.lock
# The generated Lambda targets python3.12 or 3.13; develop on one when this machine has it
# (a pyenv install counts), otherwise on any Python 3.12 or newer (the lock needs 3.12).
PYTHON ?= $(shell for candidate in python3.12 python3.13 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[23].*/bin/python3 2>/dev/null) python3; do \
	"$$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null && { echo "$$candidate"; break; }; done)
# .venv is built with uv (seconds) from the hashed requirements-test.lock. uv comes from PATH, or
# else is installed once into .venv-uv with pip, pinned by version and hash in the project's
# requirements-uv.lock. `make UV=` builds .venv with python -m venv and pip instead (minutes).
UV_LOCK := {{cookiecutter.project_slug}}/requirements-uv.lock
UV_BOOTSTRAP := .venv-uv
UV_ON_PATH := $(shell command -v uv 2>/dev/null)
UV ?= $(or $(UV_ON_PATH),$(UV_BOOTSTRAP)/bin/uv)
# `make lock` needs uv even when UV= installs with pip.
LOCK_UV := $(or $(UV),$(UV_BOOTSTRAP)/bin/uv)
# uv gets the Python found above, and must never download one.
export UV_PYTHON_DOWNLOADS := never

DEMO_DIR := build/demo
DEMO_PROJECT := $(DEMO_DIR)/product-recommendations
COUNT ?= 300
# The slow tier runs six baked projects' suites, one per pytest worker, so all six start at
# once; the longer ones mostly wait on queue timeouts. The fast tier runs beside it in its own
# workers: one pytest run for both would queue some suites behind others or the fast tests.
SLOW_WORKERS ?= 6
FAST_WORKERS ?= 2
TEST_LOG := build/test-fast.log

.PHONY: help demo test test-fast lock clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# One environment serves the template's tests and every project they bake: requirements-test.lock
# holds the generated project's pinned tools plus cookiecutter's. Both ways install in
# hash-checking mode: a package whose hash is not in the lock is refused.
$(VENV)/.installed: requirements-test.lock | $(filter $(UV_BOOTSTRAP)/bin/uv,$(UV))
	@test -n "$(PYTHON)" || { echo "Python 3.12+ not found; install python3.12" >&2; exit 1; }
ifeq ($(UV),)
	@echo "Creating $(VENV) with $(PYTHON) using pip (first run only; minutes)..."
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-test.lock
else
	@echo "Creating $(VENV) with $(PYTHON) using uv (first run only)..."
	test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --require-hashes --python $(PY) requirements-test.lock
endif
	@touch $@

$(UV_BOOTSTRAP)/bin/uv: $(UV_LOCK)
	@test -n "$(PYTHON)" || { echo "Python 3.12+ not found; install python3.12" >&2; exit 1; }
	@echo "Installing uv into $(UV_BOOTSTRAP) from $(UV_LOCK) (first run only)..."
	rm -rf $(UV_BOOTSTRAP) && $(PYTHON) -m venv $(UV_BOOTSTRAP)
	$(UV_BOOTSTRAP)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r '$(UV_LOCK)'
	@touch $@

demo: $(VENV)/.installed ## Bake a project with the defaults into build/demo and run its local pipeline (COUNT=300)
	rm -rf $(DEMO_DIR)
	$(PY) -m cookiecutter --no-input --output-dir $(DEMO_DIR) .
	$(MAKE) -C $(DEMO_PROJECT) local VENV=$(abspath $(VENV)) COUNT=$(COUNT) -o $(abspath $(VENV))/.installed

test: $(VENV)/.installed ## Run the template's whole test suite: the fast tier beside the slow tier (baked suites)
	$(PY) -m ruff check hooks tests
	$(PY) -m ruff format --check hooks tests
	@mkdir -p $(dir $(TEST_LOG))
	@echo "Fast tier in the background (output in $(TEST_LOG), shown at the end); slow tier here:"
	@$(PY) -m pytest -n $(FAST_WORKERS) --dist worksteal -m "not slow" > $(TEST_LOG) 2>&1 & fast=$$!; \
	$(PY) -m pytest -n $(SLOW_WORKERS) --dist load -m slow -v; slow=$$?; \
	wait $$fast; fast=$$?; \
	echo "--- fast tier ---"; cat $(TEST_LOG); \
	test $$slow -eq 0 && test $$fast -eq 0

test-fast: $(VENV)/.installed ## The fast tier alone: hooks, environments, every combination baked and checked (seconds)
	$(PY) -m pytest -n $(FAST_WORKERS) --dist worksteal -m "not slow"

# The project lock must cover every option: it is baked with the optional pins (X-Ray) and locked
# by the project's own `make lock`. The template's lock then adds its test tools to those pins.
LOCK_DIR := build/lock
LOCK_PROJECT := $(LOCK_DIR)/product-recommendations
LOCK_UV_PATH := $(if $(findstring /,$(LOCK_UV)),$(abspath $(LOCK_UV)),$(LOCK_UV))

lock: $(VENV)/.installed $(filter $(UV_BOOTSTRAP)/bin/uv,$(LOCK_UV)) ## Re-resolve both hashed locks: the project's requirements-dev.lock, then requirements-test.lock
	rm -rf $(LOCK_DIR)
	$(PY) -m cookiecutter --no-input --output-dir $(LOCK_DIR) . xray_tracing=active
	$(MAKE) -C $(LOCK_PROJECT) lock UV='$(LOCK_UV_PATH)' $(if $(UPGRADE),UPGRADE=1)
	cp $(LOCK_PROJECT)/requirements-dev.lock '$(PROJECT_LOCK)'
	$(LOCK_UV) pip compile --quiet --universal --python-version 3.12 --generate-hashes --no-header \
	  $(if $(UPGRADE),--upgrade) requirements-test.txt '$(PROJECT_LOCK)' -o requirements-test.lock
	{ echo "# The template's environment: its test tools (requirements-test.txt) on top of every pin of the generated"; \
	  echo "# project's lock ({{cookiecutter.project_slug}}/requirements-dev.lock), with hashes, for Python 3.12+."; \
	  echo "# Generated by \`make lock\` (uv pip compile --universal --generate-hashes); edit requirements-test.txt."; \
	  cat requirements-test.lock; } > requirements-test.lock.new && mv requirements-test.lock.new requirements-test.lock

clean: ## Remove the virtual environments and build/
	rm -rf $(VENV) $(UV_BOOTSTRAP) build

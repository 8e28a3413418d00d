# Enclave's entry points. Each one bootstraps itself through `setup`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test lint bench docs format

setup:
	@bash scripts/setup.sh

# The demo needs only what the product runs (no test control plane, no browser).
demo:
	@bash scripts/setup.sh runtime
	@$(BIN)/enclave demo

test: setup
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy --strict policies audit auth
	$(BIN)/lint-imports
	$(BIN)/python -m policies.docs --check docs/tiers.md
	$(BIN)/python -m controller.clidocs --check docs/cli.md
	$(BIN)/python hack/pins.py --check

bench: setup
	@set -e; for b in benchmarks/*.py; do echo "== $$b" >&2; $(BIN)/python -P $$b; done

docs: setup
	$(BIN)/python -m policies.docs --write docs/tiers.md
	$(BIN)/python -m controller.clidocs --write docs/cli.md

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

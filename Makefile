# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PKG    := function_app.py shared devstack
SPA    := samples/spa
# npm ci's own record of what it installed: older than the lock file means install again.
SPA_INSTALLED := $(SPA)/node_modules/.package-lock.json

.DEFAULT_GOAL := help
.PHONY: help setup spa run test lint format typecheck bench settings clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## create .venv and install the pinned dependencies

# The sample SPA's @azure/msal-browser, exactly as package-lock.json pins it. Without npm the
# stack still runs (the SPA says what is missing) and the browser test skips.
$(SPA_INSTALLED): $(SPA)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(SPA) && npm ci --no-audit --no-fund --loglevel=error; \
	else \
		echo "npm not found: the sample SPA ($(SPA)) and its browser test need Node.js and npm"; \
	fi

spa: $(SPA_INSTALLED)  ## install the sample SPA's npm packages (npm ci)

run: setup spa  ## start the dev stack (Entra + Dataverse emulators, API host) with demo data
	$(BIN)/python -m devstack run

test: setup spa lint typecheck  ## lint, type-check and run the whole test suite
	$(BIN)/python -m pytest

lint: setup  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: setup  ## mypy (strict) on the package
	$(BIN)/mypy

bench: setup  ## measure the performance figures (bench/README.md); a few minutes
	$(BIN)/python -m bench

settings: setup  ## write local.settings.json for Core Tools from the running stack (FORCE=1 replaces one)
	$(BIN)/python -m devstack settings $(if $(filter 1,$(FORCE)),--force)

clean:  ## remove the virtualenv, generated keys and caches
	rm -rf $(VENV) .devstack .pytest_cache .mypy_cache .ruff_cache $(SPA)/node_modules test-results

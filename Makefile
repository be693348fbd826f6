# Blagh — every target installs what it needs on a fresh Debian machine, and does nothing
# again when nothing changed.  `make` alone lists the targets.

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
PY_STAMP   := $(VENV)/.installed
JS_STAMP   := node_modules/.installed
SYS_STAMP  := $(VENV)/.system-packages
# Debian packages the targets need: node/npm for the libsodium.js interop check,
# gnupg for the benchmark's SecureDrop-like baseline, iproute2 to bring up loopback
# inside the tests' network namespace.
APT_PACKAGES := nodejs npm gnupg iproute2 util-linux

.DEFAULT_GOAL := help
.PHONY: help run test lint bench pytest vectors clean

help: ## list the targets
	@echo "Blagh — anonymous reporting platform"
	@echo
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 16

$(SYS_STAMP): Makefile scripts/ensure-system-packages.sh
	@mkdir -p $(VENV)
	@scripts/ensure-system-packages.sh $(APT_PACKAGES)
	@touch $@

$(PY_STAMP): pyproject.toml constraints.txt $(SYS_STAMP)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	@touch $@

$(JS_STAMP): package.json package-lock.json $(SYS_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(PY_STAMP) $(JS_STAMP) ## set up the virtualenv and node modules (run by the other targets)

run: $(PY_STAMP) ## start the source interface on ./data (a demonstration key is made if needed)
	scripts/run.sh

lint: $(PY_STAMP) ## ruff and mypy (strict on crypto/)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint $(JS_STAMP) ## lint, then the whole test suite, offline in a loopback-only namespace
	scripts/offline.sh $(PY) -m pytest $(PYTEST_ARGS)

bench: $(PY_STAMP) $(SYS_STAMP) ## throughput and cost figures, printed as a table
	scripts/offline.sh $(PY) bench/bench.py

vectors: $(PY_STAMP) ## regenerate tests/vectors/ (commit the result)
	$(PY) tests/vectors/make_vectors.py

clean: ## remove the virtualenv, node modules and caches
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis

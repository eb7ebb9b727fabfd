# Two commands on a fresh machine:  make book   and   make test
# Each creates .venv when it is missing and installs what it needs; a second run installs nothing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is installed first, on its own: on the project machines pip takes these releases from local
# disk. Override on other machines, e.g. `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium

export LSLIB_QUICK ?= 1
export PYTHONHASHSEED := 0
# The data root (see README): $LSLIB_DATA when set, else ../shared/data where that exists (the
# project machines); without either, chapters download MNIST where a network exists.
ifeq ($(origin LSLIB_DATA), undefined)
ifneq ($(wildcard ../shared/data),)
export LSLIB_DATA := $(abspath ../shared/data)
endif
endif

.PHONY: help install test lint pytest notebooks sync book browser-check chromium bench lab clean

help:
	@echo "make book   - build the HTML book into _build/html (CPU, quick mode)"
	@echo "make test   - lint, unit tests and every chapter under nbmake"
	@echo "make bench  - run the benchmarks in bench/"
	@echo "make sync   - regenerate each chapter's .ipynb from its MyST .md (jupytext)"
	@echo "make browser-check - open every page of the built book in headless Chromium"
	@echo "make lab    - open the chapters in JupyterLab (quick mode; LSLIB_QUICK=0 for the full one)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test,book]'
	@test -x $(CHROMIUM) || $(MAKE) --no-print-directory chromium || \
		echo "WARNING: $(CHROMIUM) could not be installed: 'make browser-check' will fail" >&2
	touch $(STAMP)

install: $(STAMP)

# ruff on the code; actionlint on the GitHub workflows (.github/workflows/*.yml)
lint: $(STAMP)
	$(VENV)/bin/ruff check lslib tests bench book
	$(VENV)/bin/actionlint

pytest: $(STAMP)
	$(VENV)/bin/pytest tests

# Every chapter, executed by nbmake (quick mode), two at a time. A quick-mode chapter takes well
# under a minute. Every cell is bounded by the same per-cell timeout as `make book` (_config.yml's
# execute.timeout). Live ipywidgets cells are tagged skip-execution and not run (headless, they
# can stall the notebook client forever, cf. jupyter/nbclient#312); hidden cells run their
# functions instead. tests/test_book.py guards both.
NB_TIMEOUT := 1200
notebooks: $(STAMP)
	$(VENV)/bin/pytest --nbmake --nbmake-timeout=$(NB_TIMEOUT) -n 2 book/*.ipynb

# Each chapter is book/NAME.md (MyST, edit this) paired with book/NAME.ipynb (no outputs).
sync: $(STAMP)
	$(VENV)/bin/jupytext --sync $$(grep -l '^  formats: ipynb,md:myst' book/*.md)

test: lint pytest notebooks

# The execution cache is keyed by a notebook's code, not by what that code reads or calls: when
# results/ or lslib/ changes (a new run, a recomputed table, a fixed helper), the cache is emptied
# so that no page shows stale outputs.
INPUTS_DIGEST = find results lslib -type f ! -name '*.journal.jsonl' ! -name '*.lock' ! -name '*.pyc' | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16

book: $(STAMP)
	@mkdir -p _build; digest=$$($(INPUTS_DIGEST)); \
	if [ "$$(cat _build/.inputs-digest 2>/dev/null)" != "$$digest" ]; then \
		echo "results/ or lslib/ changed since the last build: emptying the execution cache"; \
		rm -rf _build/.jupyter_cache; fi; \
	$(VENV)/bin/jupyter-book build . --all --path-output . -W -n --keep-going \
		&& echo "$$digest" > _build/.inputs-digest

# Debian's chromium, driven by Playwright (no browser download): needs root and apt the first time.
chromium:
	@test -x $(CHROMIUM) || { \
		echo "installing Debian's chromium for the browser check"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| { echo "ERROR: could not install chromium (apt-get needs root); the browser check cannot run" >&2; exit 1; }; }

# Opens every page of _build/html (run `make book` first); screenshots go to _build/screenshots/.
browser-check: $(STAMP) chromium
	$(PY) tests/browser_check.py --html _build/html --screenshots _build/screenshots

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# JupyterLab on the chapters, from the repository root (the chapters read results/), opened on the
# book/ folder; each chapter is book/NAME.ipynb (jupytext also opens the paired .md as a notebook).
# Its kernels get this Makefile's LSLIB_QUICK (1, quick mode): `make lab LSLIB_QUICK=0` runs the
# chapters in full, as a reader on Colab does.
# Extra options go in LAB_FLAGS, e.g. make lab LAB_FLAGS="--no-browser --port 8899".
# (Jupyter refuses to run as root without --allow-root: containers and these machines run as root.)
LAB_OPTS := --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/book
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_OPTS) $(LAB_ROOT) $(LAB_FLAGS)

clean:
	rm -rf _build .pytest_cache .ruff_cache

# Two commands on a fresh machine:  make book   and   make test
# Each creates .venv when it is missing and installs what it needs; a second run installs nothing.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch is installed first, on its own: on the project machines pip takes these releases from local
# disk. Override on other machines, e.g. `make test TORCH_SPEC="torch torchvision"`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.installed

export LSLIB_QUICK ?= 1
export PYTHONHASHSEED := 0

.PHONY: help install test lint pytest notebooks book browser-check bench clean

help:
	@echo "make book   - build the HTML book into _build/html (CPU, quick mode)"
	@echo "make test   - lint, unit tests and every chapter under nbmake"
	@echo "make bench  - run the benchmarks in bench/"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test,book]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check lslib tests bench

pytest: $(STAMP)
	$(VENV)/bin/pytest tests

notebooks: $(STAMP)
	@if ls book/*.ipynb >/dev/null 2>&1; then \
		$(VENV)/bin/pytest --nbmake --nbmake-timeout=600 book/*.ipynb; \
	else echo "no chapters yet"; fi

test: lint pytest notebooks

book: $(STAMP)
	$(VENV)/bin/jupyter-book build . --path-output . -W -n --keep-going

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf _build .pytest_cache .ruff_cache

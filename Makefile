# fsearch developer entry points. `make run` and `make test` set everything up on first use
# (a virtual environment in .venv with fsearch installed in editable mode) and are fast after.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TRIALS ?= 50
ARGS   ?=

# Offline machines (CI, the team's) keep the official files in ../shared/data; elsewhere fsearch
# downloads them into its per-user cache. An explicit FSEARCH_DATA_DIR always wins.
ifeq ($(origin FSEARCH_DATA_DIR), undefined)
  ifneq ($(wildcard ../shared/data/FashionMNIST/raw),)
    export FSEARCH_DATA_DIR := $(abspath ../shared/data)
  endif
endif

.PHONY: run test lint test-fast test-slow clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,onnx]'
	touch $(STAMP)

run: $(STAMP)  ## set up, then search: fsearch run --trials $(TRIALS) $(ARGS)
	$(BIN)/fsearch run --trials $(TRIALS) $(ARGS)

test: lint test-fast test-slow  ## set up, then lint, type-check, default suite, slow suite

lint: $(STAMP)
	$(BIN)/ruff check search space tests benchmarks
	$(BIN)/ruff format --check search space tests benchmarks
	$(BIN)/mypy
	$(BIN)/bandit -q -r search space -c pyproject.toml

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q

# The slow tests start their own worker processes, servers and a browser: one test at a time.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow -n 0

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

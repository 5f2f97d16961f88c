# Two commands on a fresh machine: `make train` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-vltr
TORCH   ?= torch==2.13.0
ARGS    ?=

.PHONY: install train test test-fast bench bench-scale lint format clean notebooks

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned: the CPU wheel on this machine's disk (a looser pin pulls a CUDA build)
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## builds the embedded synthetic dataset (cached in data/), trains, prints the H/M/T table
train: $(STAMP)
	$(BIN)/vltr-train experiment=bce_nonlinear_synthetic_synthetic $(ARGS)

## the test suite (CPU, no GPU needed)
test: $(STAMP)
	$(BIN)/python -m pytest -q tests $(ARGS)

## executes notebooks/*.ipynb (on logs/ and data/) into logs/notebooks/, with outputs
notebooks: $(STAMP)
	$(BIN)/python -m vltr.analysis.execute notebooks/*.ipynb --out logs/notebooks

bench: $(STAMP)
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/aggregators.py

## peak memory and cold-cache loader throughput at 2,000 and 20,000 VideoLT-shaped videos: writes
## 13.5 GB of stores under /tmp (deleted afterwards), ~3 min on 2 cores; docs/scale.md
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench

clean:
	rm -rf logs outputs multirun .pytest_cache

# Two commands on a fresh machine: `make train` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-vltr
TORCH   ?= torch==2.13.0
ARGS    ?=
# test processes (pytest-xdist); each test file runs whole in one of them, so a file's shared
# fixtures are built once. TEST_WORKERS=0 runs everything in this process (for debugging).
TEST_WORKERS ?= 2

.PHONY: install train test test-fast bench bench-scale lint format clean notebooks docs docs-serve

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
	$(BIN)/vltr-train experiment=synthetic/base_bce_nonlinear_linear_synthetic_synthetic $(ARGS)

## the lint and format checks, then the test suite (CPU, no GPU needed)
test: lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests $(ARGS)

## the notebooks' committed outputs: a small sweep on the embedded synthetic dataset (run once
## into $(NOTEBOOK_SWEEP): bce and ldam_drw at imbalance ratios 0.01 and 0.05, 8 epochs), then
## every notebook executed in place on it (papermill)
NOTEBOOK_SWEEP ?= logs/notebooks/sweep
notebooks: $(STAMP)
	test -f $(NOTEBOOK_SWEEP)/multirun.yaml || $(BIN)/vltr-train -m \
	    experiment=synthetic/base_bce_nonlinear_linear_synthetic_synthetic strategy=bce,ldam_drw \
	    dataset.synthetic.imbalance_ratio=0.01,0.05 schedule.epochs=8 \
	    'schedule.scheduler.milestones=[6]' hydra.sweep.dir=$(NOTEBOOK_SWEEP)
	$(BIN)/python -m vltr.analysis.execute notebooks/*.ipynb --inplace -p SWEEP $(NOTEBOOK_SWEEP)

## the documentation site (mkdocs-material) into site/, strict: a broken link or a page
## missing from the navigation fails the build
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

## stream, metrics, aggregators and methods (its compile rows included: 6 min on 2 cores);
## docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python bench/stream.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/aggregators.py
	$(BIN)/python bench/methods.py --compile

## peak memory and cold-cache loader throughput at 2,000 and 20,000 VideoLT-shaped videos: writes
## 13.5 GB of stores under /tmp (deleted afterwards), ~3 min on 2 cores; docs/scale.md
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py $(ARGS)

## ruff: lint rules and formatting, checked (make format rewrites)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

clean:
	rm -rf logs outputs multirun site .pytest_cache

# The two commands: `make bench` (install if needed, run the CPU default grid, write the report)
# and `make test` (install if needed, run the test suite). Both work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CORE_STAMP := $(VENV)/.installed-core
# The CPU build of torch lies on this machine's disk; installing it first means the range in
# pyproject.toml is already satisfied and pip never pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
BENCH_OUT ?= results/bench

.PHONY: install install-core test test-quick lint bench report clean clean-results

# `make test` (and lint) install the dev extra: pytest, ruff, the trackers, submitit, datasets.
install: $(STAMP)

# `make bench` needs only the core dependencies.
install-core: $(CORE_STAMP)

$(CORE_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	touch $(CORE_STAMP)

$(STAMP): $(CORE_STAMP)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: install
	$(PY) -m pytest

# The quick loop while editing: everything but the tests that start processes (marked slow).
test-quick: install
	$(PY) -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

# configs/bench.yaml: 144 trials (3 arms x 4 lags x 12 seeds), up to 12 budget-check trials and the report;
# how long it takes from a fresh clone: README.md ("The two commands").
bench: install-core
	$(VENV)/bin/harness run configs/bench.yaml --out $(BENCH_OUT)
	$(VENV)/bin/harness report $(BENCH_OUT)

report: install-core
	$(VENV)/bin/harness report $(BENCH_OUT)

# Build artefacts only: results/ holds the user's experiments and is never touched by `clean`.
clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Deletes every experiment under results/ (keeps results/.gitkeep). Asks first unless YES=1.
clean-results:
	@if [ "$(YES)" != "1" ]; then printf 'delete every results/<name> folder? [y/N] '; read a; [ "$$a" = y ]; fi
	find results -mindepth 1 -maxdepth 1 ! -name .gitkeep -exec rm -rf {} +

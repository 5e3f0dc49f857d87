# Two commands: `make bench` runs the default benchmark, `make test` runs the test suite.
# Each creates .venv when missing: torch==2.13.0 (CPU wheel) is installed first and pinned, so no resolver
# pulls a second, multi-GB CUDA build; then the project with its dev extras.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.survbench-installed

.PHONY: bench bench-deep test install clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH)"
	touch $(STAMP)

install: $(STAMP)

# `make bench`: the clinical and feature methods over the whole sweep, about 16 minutes on 2 cores from an
# empty cache (measured), ending with the leaderboard. `make bench-deep`: the deep image methods over the
# clean and noisy protocols (one training per fold serves every noise fraction; about 6 minutes per fold and
# method on 2 cores). Both are resumable: run again after a kill and only the missing jobs run. A fold whose
# finished rows came from another store (bench store import) has no fitted model here: bench run refuses to
# refit it for more noise levels (two models in one fold); drop that experiment and rerun every protocol.
NOISE := noisy10,noisy20,noisy30,noisy40,noisy50,noisy60,noisy70,noisy80,noisy90,noisy100
SWEEP ?= clean,$(NOISE),loco,center-split
METHODS ?= coxph,oracle,radiomics-cox,lasso-cox,rsf,deepsurv
DEEP_METHODS ?= deepmts,tmss,tmss-image
DEEP_SWEEP ?= clean,$(NOISE)

bench: $(STAMP)
	$(BIN)/bench run --method $(METHODS) --protocol $(SWEEP) --scale quick
	$(BIN)/bench leaderboard --results results --out leaderboards
	cat leaderboards/synthetic-quick-v3-0/cv.md

bench-deep: $(STAMP)
	$(BIN)/bench run --method $(DEEP_METHODS) --protocol $(DEEP_SWEEP) --scale quick
	$(BIN)/bench leaderboard --results results --out leaderboards
	cat leaderboards/synthetic-quick-v3-0/cv.md

test: $(STAMP)
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)

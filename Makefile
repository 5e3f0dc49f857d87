# Two commands: `make bench` runs the default benchmark, `make test` runs the test suite.
# Each creates .venv when missing: torch==2.13.0 (CPU wheel) is installed first and pinned, so no resolver
# pulls a second, multi-GB CUDA build; then the project with its dev extras.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.survbench-installed

.PHONY: bench test install clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH)"
	touch $(STAMP)

install: $(STAMP)

SWEEP ?= clean,noisy10,noisy20,noisy30,noisy40,noisy50,noisy60,noisy70,noisy80,noisy90,noisy100,loco,center-split

bench: $(STAMP)
	$(BIN)/bench run --method all --protocol $(SWEEP) --scale quick
	$(BIN)/bench leaderboard --results results --out leaderboards
	cat leaderboards/synthetic-quick-0/cv.md

test: $(STAMP)
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)

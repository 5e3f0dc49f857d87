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

bench: $(STAMP)
	$(BIN)/bench run --method all --protocol clean,noisy50,loco,center-split --scale quick

test: $(STAMP)
	$(BIN)/python -m pytest

clean-venv:
	rm -rf $(VENV)

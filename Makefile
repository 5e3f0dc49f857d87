# Two commands: `make bench` runs the default benchmark, `make test` runs the test suite.
# Each creates .venv when missing: torch==2.13.0 (CPU wheel) is installed first and pinned, so no resolver
# pulls a second, multi-GB CUDA build; then the project with its dev extras.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.survbench-installed

.PHONY: bench bench-full bench-deep test install clean-venv site

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" "$(TORCH)"
	touch $(STAMP)

install: $(STAMP)

# `make bench`: coxph, the oracle and the two reference rows over clean, the noise sweep, the corruption suite
# at severities 1, 3 and 5 (plus the missing modalities), leave-one-centre-out and the centre split; radiomics-cox
# over clean, the noise sweep, loco and the centre split (radiomics of 20 corrupted image sets alone take about
# 25 minutes on 2 cores, so the feature methods meet the suite in `make bench-full`); it ends with the
# leaderboard. `make bench-full`: every clinical, reference and feature method over every suite severity
# (1-5), as committed. Both on the quick scale; benchmarks/make_bench_time.py times a target from an empty cache
# (make bench: 14.6 minutes on 2 cores, benchmarks/results/make-bench.json).
# `make bench-deep`: the deep image methods over clean and the noise sweep (about 6 minutes per fold and method
# on 2 cores).
# All are resumable: run again after a kill and only the missing jobs run. A fold whose finished rows came from
# another store (bench store import) has no fitted model here: bench run refuses to refit it for more protocols
# (two models in one fold); drop that experiment and rerun every protocol.
RESULTS ?= results
BOARDS ?= leaderboards
SWEEP ?= clean,noisy,suite-s135,loco,center-split
FEATURE_SWEEP ?= clean,noisy,loco,center-split
FULL_SWEEP ?= clean,noisy,suite,loco,center-split
METHODS ?= coxph,oracle,mtv-cox,clinical-mtv-cox
FEATURE_METHODS ?= radiomics-cox
FULL_METHODS ?= $(METHODS),radiomics-cox,lasso-cox,rsf,deepsurv
DEEP_METHODS ?= deepmts,tmss,tmss-image
DEEP_SWEEP ?= clean,noisy

bench: $(STAMP)
	$(BIN)/bench run --method $(METHODS) --protocol $(SWEEP) --scale quick --results $(RESULTS)
	$(BIN)/bench run --method $(FEATURE_METHODS) --protocol $(FEATURE_SWEEP) --scale quick --results $(RESULTS)
	$(BIN)/bench leaderboard --results $(RESULTS) --out $(BOARDS)
	cat $(BOARDS)/synthetic-quick-v3-0/cv.md

bench-full: $(STAMP)
	$(BIN)/bench run --method $(FULL_METHODS) --protocol $(FULL_SWEEP) --scale quick --results $(RESULTS)
	$(BIN)/bench leaderboard --results $(RESULTS) --out $(BOARDS)
	cat $(BOARDS)/synthetic-quick-v3-0/cv.md

bench-deep: $(STAMP)
	$(BIN)/bench run --method $(DEEP_METHODS) --protocol $(DEEP_SWEEP) --scale quick --results $(RESULTS)
	$(BIN)/bench leaderboard --results $(RESULTS) --out $(BOARDS)
	cat $(BOARDS)/synthetic-quick-v3-0/cv.md

test: $(STAMP)
	$(BIN)/python -m pytest

# `make site`: the static leaderboard site (index, cv/robustness/generalisation views, a page per method, plots)
# from the committed run records into site/; open site/index.html from disk, nothing comes from the network.
site: $(STAMP)
	$(BIN)/bench leaderboard --out $(BOARDS) --site site

clean-venv:
	rm -rf $(VENV)

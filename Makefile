# mlnb: `make run` installs everything into .venv and runs the default pipeline; `make test` runs the tests.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1

.PHONY: install run test test-fast lib clean-nbs bench bench-tables bench-estimate

$(STAMP): settings.ini setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/mlnb run params/default.yaml

# the PostgreSQL tests (tests/test_sources.py) start a server of their own: they need its programs installed,
# `bash tests/install-postgres.sh` (CI runs it first; it is not a prerequisite here)
# two test files at a time (pytest-xdist; a file's tests stay on one worker, so module fixtures are made once), then
# the few `serial` tests that bound wall time or latency, alone
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15 -m "not serial" tests
	$(BIN)/python -m pytest -q -m serial tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

lib: $(STAMP)
	$(BIN)/nbdev_export
	$(BIN)/nbdev_clean

bench: $(STAMP)
	$(BIN)/python bench/overhead.py

# bench/tables.py: mlnb new + mlnb run on 14 real tables against a plain baseline and FLAML (its packages are not
# needed by the tests: FLAML pulls xgboost and lightgbm; the tables ship inside statsmodels, palmerpenguins, vega_datasets)
bench-tables: $(STAMP)
	$(BIN)/pip install -q 'flaml[automl]>=2.3,<2.4' 'statsmodels>=0.14' 'palmerpenguins>=0.1.6' 'vega_datasets>=0.9'
	$(BIN)/python bench/tables.py

# bench/estimate.py: mlnb's label-free performance estimates (mlnb.estimate) against the realized performance and NannyML's
# own on the synthetic datasets nannyml ships; nannyml is only the benchmark's (its module docstring says why), it imports
# statsmodels without declaring it, and it pins lightgbm below 4.6 (FLAML's bench takes that one too)
bench-estimate: $(STAMP)
	$(BIN)/pip install -q 'nannyml==0.13.1' 'statsmodels>=0.14'
	$(BIN)/python bench/estimate.py

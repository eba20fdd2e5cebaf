# fairaug: `make demo` runs the pipeline offline on fixture data; `make test` runs the test suite.
# Both set everything up from nothing (an idempotent .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?=

export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

# Fixture data behind data.dvc: same seeds, same bytes, so a fresh clone regenerates exactly the
# data that data.dvc records (no network and no DVC remote needed).
DERM_FIXTURE := fairaug fixture derm --out data/ham10000 --n 1500 --seed 0
WOUND_FIXTURE := fairaug fixture wound --out data/wound --n 1500 --seed 1 --layout csv

.PHONY: setup data fixtures demo test test-fast browser postgresql services-up services-down bench clean-outputs

setup: $(STAMP)

# torch/torchvision first, pinned, from the machine's local wheels; then the package and the stack.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev,services]'
	touch $@

data: setup fixtures

# Regenerate missing fixture data, put it in the DVC cache, and stop if it is not exactly what
# data.dvc records (it would be with other Pillow/numpy versions than pyproject.toml pins).
fixtures:
	@if [ ! -d data/ham10000 ] || [ ! -d data/wound ]; then \
	  test -d data/ham10000 || $(DERM_FIXTURE) || exit 1; \
	  test -d data/wound || $(WOUND_FIXTURE) || exit 1; \
	  dvc commit -q -f data.dvc || exit 1; \
	  git diff --quiet -- data.dvc || { echo "error: regenerated fixture data differs from data.dvc" >&2; exit 1; }; \
	fi
	dvc status data.dvc

# `fairaug repro`: `dvc repro` with the data sets side by side: their prepare stages, base_model alone
# with every core, then their other stages, JOBS at a time with cores / JOBS torch threads each (README)
JOBS ?= 2
demo: data
	@if [ -n "$(PROFILE)" ]; then fairaug profile $(PROFILE); fi
	fairaug repro --jobs $(JOBS)
	@echo "Runs are in MLflow: mlflow ui --backend-store-uri sqlite:///mlflow.db"

# Two pytest workers (pytest-xdist): much of a test is process start-up, DVC and MLflow I/O, so two
# workers on 2 cores finish the suite in 3/4 of the time; --durations names the slowest tests. Each
# worker takes whole test files (tests/conftest.py), the e2e test first and then the slow ones:
# --no-loadscope-reorder keeps that order (xdist would otherwise start with the files of most tests).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --no-loadscope-reorder
test: setup browser postgresql
	$(BIN)/python -m pytest $(XDIST) --durations=15

# The dashboard's browser test drives Debian's headless Chromium (installed only when missing; root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }

# The services tests (tests/services) start PostgreSQL from Debian's package (installed only when
# missing; root), moto's S3 server and an MLflow server on them; scripts/services.py does it for people.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }

# eval "$$(make -s services-up)": PostgreSQL + S3 + MLflow server on 127.0.0.1, DVC remote in .dvc/config.local
services-up: setup postgresql
	@$(BIN)/python scripts/services.py up

services-down:
	@$(BIN)/python scripts/services.py down

test-fast: setup
	$(BIN)/python -m pytest $(XDIST) -m "not slow and not e2e"

bench: setup
	$(BIN)/python bench/run_all.py

clean-outputs:
	rm -rf outputs

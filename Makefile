# balnmp-cache — the two set-up commands are `make demo` and `make test`; both install what they need.
#
#   make demo                  demo cohort -> extract -> train (3 variants) -> report, all on the CPU
#   make test                  the default test suite (not slow, not gpu)
#   make lint                  ruff (lint + import order) and mypy, configured in pyproject.toml
#   make extract|train|report  one stage from stages/*.toml; CONFIG=path picks another configuration
#   make ablate                an ablation grid (CONFIG=stages/ablations/<grid>.toml)
#   make nuclei                nucleus morphometry (§2.4) on the demo cohort: tables, histogram bags, summaries
#   make nuclei-report         make nuclei, train attention-MIL on the bags, report the per-feature statistics
#   make bench                 benchmarks/bench_*.py (BENCH_ARGS=--quick for the short versions)

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLI := $(BIN)/balnmp-cache
STAMP := $(VENV)/.installed-stamp
CONFIG ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=

DEMO_ROOT := demo/bcnb
DEMO_OUT := out/demo
DEMO_RUNS := $(DEMO_OUT)/runs

.PHONY: install demo demo-data extract train demo-runs report ablate nuclei nuclei-report bench test test-all lint clean distclean

install: $(STAMP)

# Re-run only when pyproject.toml changes (or the environment is missing).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo-data: install
	$(CLI) demo-data $(DEMO_ROOT)

extract: install $(if $(CONFIG),,demo-data)
	$(CLI) extract --config $(or $(CONFIG),stages/extract.toml)

train: install $(if $(CONFIG),,extract)
	$(CLI) train --config $(or $(CONFIG),stages/train.toml)

# The three variants the demo report compares: image only, image + clinical, clinical only.
RUN_FLAGS_image := --no-clinical
RUN_FLAGS_image_clinical := --clinical
RUN_FLAGS_clinical_only := --head clinical_only --clinical
DEMO_RUN_JSON := $(foreach run,image image_clinical clinical_only,$(DEMO_RUNS)/$(run)/run.json)

# `make demo` always retrains them (seconds each) ...
demo-runs: install extract
	rm -f $(DEMO_RUN_JSON)
	$(MAKE) --no-print-directory $(DEMO_RUN_JSON)

# ... while `make report` trains only the runs that are missing.
$(DEMO_RUNS)/%/run.json: | install extract
	$(CLI) train --config stages/train.toml $(RUN_FLAGS_$*) --out $(DEMO_RUNS)/$*

report: install $(if $(CONFIG),,$(DEMO_RUN_JSON))
	$(CLI) report --config $(or $(CONFIG),stages/report.toml)

demo: install demo-data extract demo-runs
	$(CLI) report --config stages/report.toml

ablate: install $(if $(CONFIG),,extract)
	$(CLI) ablate $(or $(CONFIG),stages/ablations/demo.toml)

NUCLEI_OUT := $(DEMO_OUT)/nuclei

nuclei: install $(if $(CONFIG),,demo-data)
	$(CLI) nuclei --config $(or $(CONFIG),stages/nuclei.toml)

# The eight feature histograms of a WSI are one bag: N = 8 instances, so --bag-size 8 (one bag per patient per
# epoch, two optimiser steps per epoch on the demo): a larger learning rate and more epochs than for patches.
nuclei-report: nuclei
	$(CLI) train --config stages/train.toml --cache $(NUCLEI_OUT)/bags --head abmil --bag-size 8 --no-clinical \
		--lr 1e-3 --epochs 200 --patience 40 --out $(DEMO_RUNS)/nuclei
	$(CLI) report $(DEMO_RUNS)/nuclei --out $(DEMO_OUT)/nuclei-report --clinical $(DEMO_ROOT) --nuclei $(NUCLEI_OUT)

bench: install
	@set -e; for script in benchmarks/bench_*.py; do \
		echo "== $$script $(BENCH_ARGS)"; $(BIN)/python $$script $(BENCH_ARGS); done

# pytest exits with 5 when it collects nothing: that is a broken suite, not a pass.
test: install
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; the suite is broken" >&2; exit 1; fi; \
	exit $$rc

test-all: install
	$(BIN)/python -m pytest -m "not gpu" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check balnmp_cache tests benchmarks
	$(BIN)/mypy balnmp_cache

clean:
	rm -rf out demo .pytest_cache benchmarks/out

distclean: clean
	rm -rf $(VENV) *.egg-info

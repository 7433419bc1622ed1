# balnmp-cache — the two set-up commands are `make demo` and `make test`; both install what they need.
#
#   make demo                  demo cohort -> extract -> train (3 variants) -> report, all on the CPU, each step once
#   make test                  the default test suite (not slow, not gpu)
#   make lint                  ruff (lint + import order) and mypy, configured in pyproject.toml
#   make extract|train|report  one stage from stages/*.toml; CONFIG=path picks another configuration
#                              (without CONFIG, `make train` writes out/demo/train and leaves the demo's runs alone)
#   make heatmap               attention heatmaps, galleries and QuPath GeoJSON of the demo runs (stages/heatmap.toml)
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
DEMO_CACHE_ROOT := $(DEMO_OUT)/cache
DEMO_RUNS := $(DEMO_OUT)/runs

.PHONY: install demo demo-data extract train demo-runs report heatmap ablate nuclei nuclei-report bench test test-all lint clean distclean

install: $(STAMP)

# Re-run only when pyproject.toml changes (or the environment is missing).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# --- the demo: each stage's target runs the stage before it ---------------------------------------------------

# The demo reads the JPEG slides only, so it writes no pyramidal TIFFs; a cohort an earlier version wrote with
# them is kept as it is (demo-data refuses to rewrite a cohort with other arguments).
DEMO_PYRAMIDAL := $(if $(shell grep -s '"pyramidal": true' $(DEMO_ROOT)/demo-cohort.json),--pyramidal,--no-pyramidal)

demo-data: install
	$(CLI) demo-data $(DEMO_ROOT) $(DEMO_PYRAMIDAL)

extract: install $(if $(CONFIG),,demo-data)
	$(CLI) extract --config $(or $(CONFIG),stages/extract.toml)

# The cache folder the last `make extract` wrote or reused (extract rewrites its config.toml on every run), so a
# cache of another setting in the same root does not stop training. Expanded when a recipe that uses it starts.
DEMO_CACHE = $(or $(shell ls -t $(DEMO_CACHE_ROOT)/*/config.toml 2>/dev/null | head -n 1 | xargs -r dirname),$(DEMO_CACHE_ROOT))

train: install $(if $(CONFIG),,extract)
	$(CLI) train --config $(or $(CONFIG),stages/train.toml) $(if $(CONFIG),,--cache $(DEMO_CACHE) --out $(DEMO_OUT)/train --force)

# The three variants the demo report compares: image only, image + clinical, clinical only.
DEMO_RUN_NAMES := image image_clinical clinical_only
DEMO_RUN_JSON := $(foreach run,$(DEMO_RUN_NAMES),$(DEMO_RUNS)/$(run)/run.json)
RUN_FLAGS_image := --no-clinical
RUN_FLAGS_image_clinical := --clinical
RUN_FLAGS_clinical_only := --head clinical_only --clinical
DEMO_HEATMAPS := $(DEMO_OUT)/heatmaps

DEMO_RUN_TARGETS := $(addprefix demo-run-,$(DEMO_RUN_NAMES))

# `make demo` always retrains them (seconds each), two at a time, each on one torch thread: a seed gives the same
# predictions on any number of threads, and two runs keep both cores busy while each starts up. The sub-make
# only trains (its targets have no prerequisites); -Otarget prints a run's output whole when the run ends, as
# wide as the terminal.
demo-runs: install extract
	@echo "training $(DEMO_RUN_NAMES) into $(DEMO_RUNS), two at a time; each run's output follows when it ends"
	@if [ -t 1 ] && [ -z "$$COLUMNS" ] && size=$$(stty size 2>/dev/null); then export COLUMNS=$${size#* }; fi; \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) -j2 -Otarget DEMO_CACHE=$(DEMO_CACHE) $(DEMO_RUN_TARGETS)

.PHONY: $(DEMO_RUN_TARGETS)
$(DEMO_RUN_TARGETS): demo-run-%:
	$(CLI) train --config stages/train.toml --cache $(DEMO_CACHE) --threads 1 --force $(RUN_FLAGS_$*) --out $(DEMO_RUNS)/$*

# A target that reads the demo's runs lists $(DEMO_RUN_JSON): when any is missing, demo-runs (with the stages
# before it) runs once; when all are there, nothing is extracted or trained. (A pattern rule with several
# targets, here with the stem ".", makes them all with one run of its recipe, in every GNU make.)
$(foreach run,$(DEMO_RUN_NAMES),$(DEMO_RUNS)/$(run)/run%json):
	@$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) demo-runs

report: install $(if $(CONFIG),,$(DEMO_RUN_JSON))
	$(CLI) report --config $(or $(CONFIG),stages/report.toml)

# One heatmap folder per demo run (slides already drawn with the same run and settings are skipped); the
# report links them (`heatmaps` in stages/report.toml).
heatmap: install $(if $(CONFIG),,$(DEMO_RUN_JSON))
ifeq ($(CONFIG),)
	@set -e; for run in $(DEMO_RUN_NAMES); do \
		$(CLI) heatmap $(DEMO_RUNS)/$$run --config stages/heatmap.toml --out $(DEMO_HEATMAPS)/$$run; done
else
	$(CLI) heatmap --config $(CONFIG)
endif

demo: demo-runs
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
		--lr 1e-3 --epochs 200 --patience 40 --force --out $(DEMO_RUNS)/nuclei
	$(CLI) report $(DEMO_RUNS)/nuclei --out $(DEMO_OUT)/nuclei-report --clinical $(DEMO_ROOT) --nuclei $(NUCLEI_OUT)

# --- development ------------------------------------------------------------------------------------------------

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

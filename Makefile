# balnmp-cache — the two set-up commands are `make demo` and `make test`; both install what they need.
#
#   make demo                  demo cohort -> extract -> train (3 variants) -> report, all on the CPU
#   make test                  the default test suite (not slow, not gpu)
#   make lint                  ruff (lint + import order) and mypy, configured in pyproject.toml
#   make extract|train|report  one stage from stages/*.toml; CONFIG=path picks another configuration
#   make heatmap               attention heatmaps, galleries and QuPath GeoJSON of the demo runs (stages/heatmap.toml)
#   make ablate                an ablation grid (CONFIG=stages/ablations/<grid>.toml)
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

.PHONY: install demo demo-data extract train demo-runs report heatmap ablate bench test test-all lint clean distclean

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
DEMO_RUN_NAMES := image image_clinical clinical_only
DEMO_RUN_JSON := $(foreach run,$(DEMO_RUN_NAMES),$(DEMO_RUNS)/$(run)/run.json)
DEMO_HEATMAPS := $(DEMO_OUT)/heatmaps

# `make demo` always retrains them (seconds each) ...
demo-runs: install extract
	rm -f $(DEMO_RUN_JSON)
	$(MAKE) --no-print-directory $(DEMO_RUN_JSON)

# ... while `make report` trains only the runs that are missing.
$(DEMO_RUNS)/%/run.json: | install extract
	$(CLI) train --config stages/train.toml $(RUN_FLAGS_$*) --out $(DEMO_RUNS)/$*

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

demo: install demo-data extract demo-runs
	$(CLI) report --config stages/report.toml

ablate: install $(if $(CONFIG),,extract)
	$(CLI) ablate $(or $(CONFIG),stages/ablations/demo.toml)

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

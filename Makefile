# One command per job, the same locally and in CI: make run | test | lint | bench.
# A fresh machine needs only Python 3.11+ and make: `make venv` (run by every target) puts uv
# in .tools/ and builds .venv from uv.lock, again only when uv.lock or pyproject.toml change.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced
SMOKE_OPTS := -p celery -o addopts="-ra --strict-markers --strict-config -p no:cacheprovider"

.PHONY: venv run test test-fast test-smoke lint bench clean

venv: $(STAMP)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(UV) uv.lock pyproject.toml
	UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

# worker, beat and flower from the Procfile, with a private Redis and SQLite unless
# REDIS_URL / DATABASE_URL are set; prints Flower's address and login. Ctrl-C stops it all.
run: $(STAMP)
	exec env SAAS_TASKS_ENV=$${SAAS_TASKS_ENV:-development} $(VENV)/bin/python -m saas_tasks.devserver

# The Docker smoke tier first (skipped without an engine; exit code 5, no test collected, is not
# a failure there), then unit + integration, then the system tier: the run ends on the summary
# of tests that ran, not on the smoke tier's skips.
test: test-smoke test-fast

# The system tier runs in a pytest process of its own: no in-process worker of the integration
# tier is left consuming the shared Redis queues (dead letters included) beside its subprocesses.
test-fast: $(STAMP)
	$(VENV)/bin/pytest tests --ignore=tests/smoke --ignore=tests/system
	$(VENV)/bin/pytest tests/system

test-smoke: $(STAMP)
	$(VENV)/bin/pytest tests/smoke $(SMOKE_OPTS) || [ $$? -eq 5 ]

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy saas_tasks

# Every benchmarks/*.py, then one table of goals (also in benchmarks/results.json); fails only
# when a script crashed, not when a goal is unmet. `make bench BENCH="enqueue core_overhead"`.
bench: $(STAMP)
	$(VENV)/bin/python benchmarks/run_all.py $(BENCH)

clean:
	rm -rf $(TOOLS) $(VENV)

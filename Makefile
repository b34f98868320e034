# Two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000
export FLASK_APP := timebank
TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export TEST_POSTGRES_URL

.PHONY: run test test-sqlite test-postgres install install-dev postgres-up bench-ledger bench-matching bench-reports bench-demo bench-load screenshots audit clean bench-faults

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/flask db upgrade
	$(BIN)/flask seed if-empty
	@echo "Serving on http://$(HOST):$(PORT)/  (Ctrl-C to stop)"
	$(BIN)/flask run --host $(HOST) --port $(PORT)

# Start the local PostgreSQL when it is installed but down (harmless otherwise).
postgres-up:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
	  (command -v pg_ctlcluster >/dev/null && \
	   (pg_ctlcluster --skip-systemctl-redirect 15 main start 2>/dev/null || pg_ctlcluster 15 main start) && \
	   for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done) || \
	  echo "PostgreSQL is not running and could not be started here."

# The suite runs in PYTEST_WORKERS processes (pytest-xdist); each has its own database. PYTEST_WORKERS=0 runs it
# in one process (easier to debug).
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist worksteal)

test-sqlite: install-dev
	TEST_DB=sqlite $(BIN)/pytest $(PYTEST_PARALLEL)

test-postgres: install-dev postgres-up
	TEST_DB=postgres $(BIN)/pytest $(PYTEST_PARALLEL)

test: test-sqlite test-postgres

clean:
	rm -rf $(VENV) instance/*.sqlite3*

bench-ledger: install-dev
	$(BIN)/python bench/ledger_bench.py

# BENCH_ARGS="--only suggestions --sizes 20000 --pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres", or
# "--only app-plan --plan-size 2000x5000" for the app's create_plan end to end (see bench/matching_bench.py --help).
bench-matching: install-dev
	$(BIN)/python bench/matching_bench.py $(BENCH_ARGS)

bench-reports: install-dev
	$(BIN)/python bench/reports_bench.py

bench-demo: install-dev
	$(BIN)/python bench/demo_bench.py S M

# README screenshots (docs/screenshots/) from the demo community, in headless /usr/bin/chromium.
screenshots: install-dev
	$(BIN)/python scripts/screenshots.py

# The service under load: gunicorn (4 workers) on a private PostgreSQL (port 55432, under /tmp), the L demo community
# seeded once into a template database; prints per-endpoint latency, steps the rate to find the knee, then
# runs ledger verify. SIZE=M for the medium community.
SIZE ?= L
bench-load: install-dev
	$(BIN)/python bench/load.py --size $(SIZE)

# Fault drill on the private PostgreSQL: SIGKILL gunicorn workers and restart PostgreSQL under keyed writes.
bench-faults: install-dev
	$(BIN)/python bench/faults.py

# Known-vulnerability audit of the installed dependencies (OSV, then PyPI). Fails on a found vulnerability;
# when neither service is reachable it says NOT AUDITED and exits 0 (see docs/SECURITY.md).
audit: install-dev
	$(BIN)/python .ci/audit.py $(BIN)/pip-audit

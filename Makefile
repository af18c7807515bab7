# Two entry points: `make run` (demo on the embedded defaults) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
OCPP_PORT ?= 9000

.PHONY: run test install lint format migrate serve demo demo-reset worker bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

# The demo depot is loaded only when it is absent: an operator's edits survive a restart
# (`make demo-reset` loads the profile over them, as a new topology version).
demo: migrate
	$(PY) manage.py load_profile --keep-existing simulator/profiles/demo_depot.yaml
	$(PY) manage.py load_profile --keep-existing simulator/profiles/demo_depot_harbour.yaml
	$(PY) manage.py demo_users

demo-reset: migrate
	$(PY) manage.py load_profile simulator/profiles/demo_depot.yaml
	$(PY) manage.py load_profile simulator/profiles/demo_depot_harbour.yaml
	$(PY) manage.py demo_users

# Web server, a real Celery worker with embedded beat on the serverless filesystem broker,
# a dispatch worker that sends setpoints (threads: a slow webhook receiver holds one
# thread, never a cycle), and live demo telemetry, under one supervisor: one Ctrl-C stops
# them all cleanly. CELERY_LOGLEVEL=INFO / SERVER_LOG_LEVEL=INFO for a chattier console.
run: demo
	@$(PY) manage.py run_demo --host $(HOST) --port $(PORT) --ocpp-port $(OCPP_PORT)

# The production web server: gunicorn, WEB_CONCURRENCY sync workers (default: one per core),
# settings in microgrid/gunicorn_conf.py. Production sets DEBUG=false, SECRET_KEY, DATABASE_URL...
serve: migrate
	$(PY) manage.py collectstatic --noinput -v0
	WEB_BIND=$(HOST):$(PORT) $(VENV)/bin/gunicorn -c python:microgrid.gunicorn_conf

worker: install
	$(VENV)/bin/celery -A microgrid worker -B -Q celery,dispatch --loglevel=INFO

# The suite on the embedded default (SQLite), one pytest-xdist worker per core
# (TEST_WORKERS=0 runs it in one process). Browser, Redis and schemathesis tests run in .ci/run.
TEST_WORKERS ?= auto
test: install
	$(PY) -m pytest -n $(TEST_WORKERS) -m "not browser and not redis and not schemathesis" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: migrate
	$(PY) manage.py bench

clean:
	rm -rf $(VENV) var

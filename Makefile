# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run serve test install lint migrate manage clean

# Where `make run` serves: `make run PORT=8001`, `make run HOST=0.0.0.0` (then add the host name
# people use to ALLOWED_HOSTS).
HOST ?= 127.0.0.1
PORT ?= 8000

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# Development settings for migrate, run and manage: DEBUG=1 and the key kept in var/dev-secret-key
# (unless DEBUG or SECRET_KEY are set in the environment).
migrate: export DEBUG ?= 1
migrate: $(STAMP)
	$(PY) manage.py migrate --no-input

# Any manage.py command with the settings `make run` uses: `make manage ARGS="create_api_key web"`.
manage: export DEBUG ?= 1
manage: $(STAMP)
	$(PY) manage.py $(ARGS)

# Embedded mode: SQLite under var/, ORM broker, runserver + qcluster until Ctrl-C.
# qcluster runs in its own session so that only its main process gets a signal (the TERM from the
# trap) and stops its workers in order; a Ctrl-C reaching every worker directly can hang its stop.
run: export DEBUG ?= 1
run: migrate
	$(PY) manage.py bootstrap_demo
	$(PY) manage.py load_catalog --first-run --refresh --history 52 --owner $${ADMIN_USERNAME:-admin}
	$(PY) manage.py define_demo_model
	@echo "crmseg: admin on http://$(HOST):$(PORT)/admin/  (Ctrl-C stops web server and worker)"
	@$$(command -v setsid) $(PY) manage.py qcluster & worker=$$!; \
	  $(PY) manage.py runserver $(HOST):$(PORT) --noreload & web=$$!; \
	  trap 'kill -TERM $$worker $$web 2>/dev/null; wait' INT TERM EXIT; \
	  wait

# Production mode on one host: migrate, collect the static files (served by WhiteNoise), then
# gunicorn (crmseg_site/gunicorn.py: WEB_WORKERS, WEB_THREADS, ...) + qcluster until Ctrl-C.
# Settings come from the environment as in production: SECRET_KEY is required (DEBUG is not set here).
serve: $(STAMP)
	$(PY) manage.py migrate --no-input
	$(PY) manage.py collectstatic --no-input --verbosity 0
	@echo "crmseg: gunicorn on http://$(HOST):$(PORT)/  (Ctrl-C stops web server and worker)"
	@$$(command -v setsid) $(PY) manage.py qcluster & worker=$$!; \
	  $(PY) -m gunicorn -c python:crmseg_site.gunicorn --bind $(HOST):$(PORT) crmseg_site.wsgi & web=$$!; \
	  trap 'kill -TERM $$worker $$web 2>/dev/null; wait' INT TERM EXIT; \
	  wait

# Tests run with DEBUG off (as in production) but over plain HTTP; the key is a test-only value.
test: export SECRET_KEY ?= test-only-secret-key-not-used-anywhere-else
test: export SECURE_SSL_REDIRECT ?= 0
test: export SESSION_COOKIE_SECURE ?= 0
test: export CSRF_COOKIE_SECURE ?= 0
test: export ALLOWED_HOSTS ?= testserver,127.0.0.1,localhost
test: $(STAMP)
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (its checks, then its formatting: `ruff format .` fixes what the check lists), then mypy
# with django-stubs over the product code (configured in pyproject.toml; its cache in .mypy_cache).
# The stubs' plugin imports the settings, which want a key when DEBUG is off.
lint: export SECRET_KEY ?= lint-only-secret-key-not-used-anywhere-else
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) var/test.sqlite3

# Two commands for a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install lint migrate clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --no-input

# Embedded mode: SQLite under var/, ORM broker, runserver + qcluster until Ctrl-C.
# qcluster runs in its own session so that only its main process gets a signal (the TERM from the
# trap) and stops its workers in order; a Ctrl-C reaching every worker directly can hang its stop.
run: export DEBUG ?= 1
run: migrate
	$(PY) manage.py bootstrap_demo
	$(PY) manage.py load_catalog --first-run --refresh
	@echo "crmseg: admin on http://127.0.0.1:8000/admin/  (Ctrl-C stops web server and worker)"
	@$$(command -v setsid) $(PY) manage.py qcluster & worker=$$!; \
	  $(PY) manage.py runserver 127.0.0.1:8000 --noreload & web=$$!; \
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

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) var/test.sqlite3

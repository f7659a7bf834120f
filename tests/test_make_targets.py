"""The Makefile's run and manage targets take what the README says they take (dry runs: `make -n`)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_dry_run(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT", "ARGS", "MAKEFLAGS", "MFLAGS")}
    done = subprocess.run(["make", "-n", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_run_serves_on_host_and_port_given():
    printed = make_dry_run("run", "PORT=8001", "HOST=localhost")

    assert "runserver localhost:8001 " in printed
    assert "http://localhost:8001/admin/" in printed
    assert "8000" not in printed


def test_run_serves_on_127_0_0_1_8000_by_default():
    printed = make_dry_run("run", "PORT=8000", "HOST=127.0.0.1")
    default = make_dry_run("run")

    assert "runserver 127.0.0.1:8000 " in default
    assert default == printed


def test_manage_passes_its_arguments_to_manage_py():
    printed = make_dry_run("manage", "ARGS=create_api_key web --scopes contacts:read")

    assert ".venv/bin/python manage.py create_api_key web --scopes contacts:read" in printed


def test_serve_migrates_collects_static_and_runs_gunicorn_beside_qcluster():
    printed = make_dry_run("serve", "PORT=8001", "HOST=0.0.0.0")

    migrate, collect, web = (
        printed.index("manage.py migrate --no-input"),
        printed.index("manage.py collectstatic --no-input"),
        printed.index("-m gunicorn -c python:crmseg_site.gunicorn --bind 0.0.0.0:8001 crmseg_site.wsgi"),
    )
    assert migrate < collect < web
    assert "manage.py qcluster" in printed
    assert "runserver" not in printed
    assert "DEBUG" not in printed

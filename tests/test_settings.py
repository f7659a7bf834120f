import secrets
import subprocess
import sys

import pytest
from django.conf import settings

ENV_BASE = {"PATH": "/usr/bin:/bin", "DEBUG": "0", "SECRET_KEY": "x" * 50}


def _load_settings(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = "import crmseg_site.settings as s; print(s.DATABASES['default']['ENGINE'])"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=settings.BASE_DIR, check=False
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://db/x"),
        ("EMAIL_PORT", "twenty-five"),
        ("TIME_ZONE", "Mars/Olympus"),
        ("REDIS_URL", "localhost:6379"),
        ("Q_RETRY", "10"),
        ("DATABASE_REPLICA_URL", "sqlite:///var/replica.sqlite3"),
        ("REPLICA_MAX_LAG_SECONDS", "-1"),
        ("ACTIVITY_RETENTION_MONTHS", "-1"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(name, value):
    result = _load_settings({**ENV_BASE, name: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr.splitlines()[-1]


def test_secret_key_is_required_without_debug():
    result = _load_settings({"PATH": "/usr/bin:/bin", "DEBUG": "0"})

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_makes_up_a_secret_key_that_every_process_shares():
    code = "import hashlib, crmseg_site.settings as s; print(hashlib.sha256(s.SECRET_KEY.encode()).hexdigest())"
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "1"}

    runs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=settings.BASE_DIR)
        for _ in range(2)
    ]

    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    assert (settings.BASE_DIR / "var" / "dev-secret-key").stat().st_mode & 0o077 == 0


def test_database_url_selects_postgresql():
    result = _load_settings({**ENV_BASE, "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/crmseg"})

    assert result.stdout.strip() == "django.db.backends.postgresql"


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "crmseg.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path}/deploy.sqlite3",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr


def test_redis_url_shares_the_cache_between_processes():
    code = "import crmseg_site.settings as s; print(s.CACHES['default']['BACKEND'], s.Q_CLUSTER.get('redis'))"
    env = {**ENV_BASE, "REDIS_URL": "redis://127.0.0.1:6379/0"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=settings.BASE_DIR, check=False
    )

    assert result.stdout.split() == ["django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:6379/0"]

"""Production settings: check --deploy passes, and a bad variable stops start-up clearly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "a-long-and-random-production-secret-key-9f8e7d6c5b4a3f2e1d0c",
    "DJANGO_ALLOWED_HOSTS": "agentops.example.com",
    "DATABASE_URL": "postgres://agentops@127.0.0.1:5432/agentops",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "AGENTOPS_FERNET_KEY": "uFkUbfNK2dR0m3xQ9-0I2iNnP3aFq9tS7o5Xb1pZ_Yc=",
}


def _manage(*args, env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in PRODUCTION and not k.startswith(("DJANGO_", "AGENTOPS_"))
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_variables():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "variable,value,message",
    [
        ("DJANGO_SECRET_KEY", None, "DJANGO_SECRET_KEY is required when DJANGO_DEBUG=0"),
        ("DJANGO_SECRET_KEY", "short", "DJANGO_SECRET_KEY must be at least 50 characters"),
        ("DJANGO_ALLOWED_HOSTS", None, "DJANGO_ALLOWED_HOSTS is required"),
        ("DATABASE_URL", None, "DATABASE_URL is required"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL must be a postgres:// URL"),
        ("REDIS_URL", None, "REDIS_URL is required"),
        ("REDIS_URL", "http://localhost", "REDIS_URL must be a redis:// URL"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG must be 0 or 1"),
    ],
)
def test_bad_production_variable_stops_with_one_line(variable, value, message):
    env = dict(PRODUCTION)
    if value is None:
        env.pop(variable)
    else:
        env[variable] = value
    result = _manage("check", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert lines[0].startswith("agentops: configuration error:")


def test_embedded_default_needs_no_variable(tmp_path):
    result = _manage("check", env={"AGENTOPS_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "agentops.sqlite3").exists() or (tmp_path / "broker").exists()


def _pool_and_threads(**variables):
    script = (
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['OPTIONS']['pool']['max_size'], "
        "settings.CELERY_WORKER_CONCURRENCY)"
    )
    result = _manage("shell", "-c", script, env={**PRODUCTION, **variables})
    assert result.returncode == 0, result.stderr
    return tuple(int(value) for value in result.stdout.strip().splitlines()[-1].split())


def test_the_database_pool_has_room_for_every_worker_thread():
    assert _pool_and_threads() == (20, 8)
    assert _pool_and_threads(AGENTOPS_WORKER_CONCURRENCY="40") == (42, 40)
    assert _pool_and_threads(AGENTOPS_WORKER_CONCURRENCY="40", AGENTOPS_DB_POOL_MAX="10") == (
        10,
        40,
    )

"""Configuration comes from the environment; a bad value stops start-up with one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VARIABLES = [
    "CORRAL_HOME",
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CORRAL_URL",
    "CORRAL_LEASE_SECONDS",
]
SHOW = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
    "'name': str(s.DATABASES['default']['NAME']), 'redis': s.REDIS_URL, "
    "'debug': s.DEBUG, 'hosts': s.ALLOWED_HOSTS, 'key': s.SECRET_KEY}))"
)


def run(tmp_path, argv, **env):
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    clean.update(CORRAL_HOME=str(tmp_path / "home"), DJANGO_SETTINGS_MODULE="corral.settings")
    clean.update(env)
    return subprocess.run(argv, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60)


def settings_with(tmp_path, **env):
    done = run(tmp_path, [sys.executable, "-c", SHOW], **env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_defaults_use_sqlite_and_a_kept_secret_key_under_corral_home(tmp_path):
    first = settings_with(tmp_path)
    assert first["engine"] == "django.db.backends.sqlite3"
    assert first["name"] == str(tmp_path / "home" / "corral.sqlite3")
    assert first["redis"] == f"unix://{tmp_path / 'home' / 'redis.sock'}"
    assert first["debug"] is False
    assert "localhost" in first["hosts"]
    assert settings_with(tmp_path)["key"] == first["key"]  # generated once, then kept


@pytest.mark.slow
def test_values_from_the_environment(tmp_path):
    got = settings_with(
        tmp_path,
        DATABASE_URL="postgres://corral@db.example:5432/corral",
        REDIS_URL="redis://127.0.0.1:6379/3",
        DEBUG="yes",
        ALLOWED_HOSTS="corral.example, 10.0.0.5",
        SECRET_KEY="k" * 40,
    )
    assert got["engine"] == "django.db.backends.postgresql"
    assert got["name"] == "corral"
    assert got["redis"] == "redis://127.0.0.1:6379/3"
    assert got["debug"] is True
    assert got["hosts"] == ["corral.example", "10.0.0.5"]
    assert got["key"] == "k" * 40


@pytest.mark.parametrize(
    "name, value",
    [
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://root@localhost/corral"),
        ("DATABASE_URL", "not a url"),
        ("DATABASE_URL", "postgres://localhost:5432/"),
        ("REDIS_URL", "http://localhost:6379"),
        ("REDIS_URL", "redis://localhost:notaport/0"),
        ("ALLOWED_HOSTS", " , "),
        ("SECRET_KEY", "short"),
        ("CORRAL_URL", "ftp://example.com"),
        ("CORRAL_LEASE_SECONDS", "soon"),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(tmp_path, name, value):
    done = run(tmp_path, [sys.executable, "manage.py", "check"], **{name: value})
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert name in lines[0] and "Traceback" not in done.stderr


def test_a_corral_home_that_is_a_file_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = run(tmp_path, [sys.executable, "manage.py", "check"], CORRAL_HOME=str(blocker / "x"))
    assert done.returncode != 0
    assert "CORRAL_HOME" in done.stderr and "Traceback" not in done.stderr


def test_postgresql_connections_run_without_jit_unless_the_url_says(tmp_path, monkeypatch):
    from workspace import config

    monkeypatch.setenv("DATABASE_URL", "postgres://corral@db.example:5432/corral")
    assert config.database(tmp_path)["OPTIONS"]["options"] == "-c jit=off"
    monkeypatch.setenv("DATABASE_URL", "postgres://corral@db.example/corral?options=-c%20jit%3Don")
    assert config.database(tmp_path)["OPTIONS"]["options"] == "-c jit=off -c jit=on"

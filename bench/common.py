"""What the benchmarks share: Django in a scratch CORRAL_HOME, git, and the
environment their worker processes need to see the same database and Redis."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GIT_IDENTITY = ["-c", "user.name=Bench", "-c", "user.email=bench@example.invalid"]


def git(cwd, *args, stdin=None):
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args],
        cwd=cwd,
        input=stdin,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def setup_django(home, redis_url):
    """Django on a scratch CORRAL_HOME (the database from DATABASE_URL, else
    SQLite there), migrated. `redis_url` unless REDIS_URL is set."""
    os.environ["CORRAL_HOME"] = str(home)
    os.environ.setdefault("REDIS_URL", redis_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "workspace.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def database_vendor():
    from django.db import connection

    return connection.vendor


def worker_env(home, **extra):
    """A Corral process's environment: the same database, Redis and CORRAL_HOME as here."""
    from django.conf import settings
    from django.db import connection

    url = os.environ.get("DATABASE_URL") or f"sqlite:///{connection.settings_dict['NAME']}"
    return dict(
        os.environ,
        CORRAL_HOME=str(home),
        DATABASE_URL=url,
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="workspace.settings",
        PYTHONUNBUFFERED="1",
        **extra,
    )


def load():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())

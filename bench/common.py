"""What the benchmarks share: Django in a scratch CORRAL_HOME, git, and the
environment their worker processes need to see the same database and Redis."""

import os
import subprocess
import sys
from pathlib import Path

from workspace import processes

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
    os.environ["DJANGO_SETTINGS_MODULE"] = "corral.settings"
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
        DJANGO_SETTINGS_MODULE="corral.settings",
        PYTHONUNBUFFERED="1",
        **extra,
    )


def load():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_source(path):
    """A small git repository with one commit, to register as many times as needed."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# bench\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "start")
    return path


class Managed:
    """`python <argv>` from the project root in its own process group, its output in a log file."""

    def __init__(self, argv, env, log_path):
        self.log_path = Path(log_path)
        with open(self.log_path, "w") as log:
            self.proc = processes.spawn(
                [sys.executable, *argv],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def exited(self):
        return self.proc.poll() is not None

    def log_tail(self, lines=20):
        return "\n".join(self.log_path.read_text().splitlines()[-lines:])

    def signal(self, sig):
        processes.signal_group(self.proc.pid, sig)

    def stop(self, grace=15):
        """SIGTERM (RQ's warm shutdown: the job at hand finishes), then SIGKILL to
        the group: the leader if it outlived the grace, and anything it started."""
        processes.stop(self.proc, grace)

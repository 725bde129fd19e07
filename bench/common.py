"""What the benchmarks share: Django in a scratch CORRAL_HOME and database, git,
the environment their worker processes need to see the same database and
Redis, a gunicorn server, timing, and the sizes of a quick run."""

import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import quantiles

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


def quick():
    """BENCH_QUICK=1 (`make bench BENCH_ARGS=--quick` sets it): every benchmark
    runs small, to check that the whole run works; its figures are not the goals'."""
    return os.environ.get("BENCH_QUICK", "").lower() in ("1", "true", "yes", "on")


def sizes(full, small):
    """A benchmark's default arguments: `small` in a quick run, else `full`."""
    return small if quick() else full


def setup_django(home, redis_url=None):
    """Django on a scratch CORRAL_HOME (the database from DATABASE_URL, else
    SQLite there), migrated. `redis_url` unless REDIS_URL is set."""
    os.environ["CORRAL_HOME"] = str(home)
    if redis_url:
        os.environ.setdefault("REDIS_URL", redis_url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "corral.settings"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


class ScratchDatabase:
    """The PostgreSQL database DATABASE_URL names: created if missing (or, with
    new=True, refused if it exists), and dropped at the end if this run made it."""

    def __init__(self, url):
        import dj_database_url

        self.config = dj_database_url.parse(url)
        self.name = self.config["NAME"]
        self.created = False

    def admin(self):
        import psycopg

        c = self.config
        return psycopg.connect(
            dbname="postgres",
            user=c.get("USER") or None,
            password=c.get("PASSWORD") or None,
            host=c.get("HOST") or None,
            port=c.get("PORT") or None,
            autocommit=True,
        )

    def ensure(self, new=False):
        from psycopg import sql

        with self.admin() as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.name])
            if found.fetchone() is not None:
                if new:
                    sys.exit(f"{sys.argv[0]}: database {self.name} exists; give a new name")
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
            self.created = True

    def drop(self):
        from psycopg import sql

        if self.created:
            with self.admin() as conn:
                name = sql.Identifier(self.name)
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@dataclass
class Scratch:
    home: Path  # the temporary CORRAL_HOME
    own_database: bool  # SQLite in home, or a PostgreSQL database this run created


@contextmanager
def scratch_django(prefix, redis_url=None, new_database=False) -> Iterator[Scratch]:
    """Django set up on a temporary CORRAL_HOME and, when DATABASE_URL names
    PostgreSQL, its database (created if missing); all of it removed at the
    end. A database that was there before keeps what the run left in it."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    url = os.environ.get("DATABASE_URL", "").strip()
    database = ScratchDatabase(url) if url.startswith(("postgres://", "postgresql://")) else None
    try:
        if database is not None:
            database.ensure(new=new_database)
        setup_django(home, redis_url)
        try:
            yield Scratch(home, database is None or database.created)
        finally:
            from django.db import connections

            connections.close_all()
    finally:
        if database is not None:
            database.drop()
        shutil.rmtree(home, ignore_errors=True)


class World:
    """The rows a run made: deleted at the end from a database that was there before."""

    def __init__(self):
        self.repos = []
        self.agents = []
        self.plans = []

    def forget(self):
        from agents.models import Agent, Session
        from beads.models import Plan
        from workspace.models import Repository

        Session.objects.filter(bead__repository__in=self.repos).delete()
        Repository.objects.filter(pk__in=[r.pk for r in self.repos]).delete()
        Plan.objects.filter(pk__in=[p.pk for p in self.plans]).delete()
        Agent.objects.filter(pk__in=[a.pk for a in self.agents]).delete()


def run_with_world(prefix, benchmark, args, redis_url=None):
    """benchmark(args, home, world) on scratch_django; its exit status. The rows
    it notes in world are deleted from a database that was there before. With
    redis_url, that Redis database is emptied at the start and at the end."""
    world = World()
    with scratch_django(prefix, redis_url) as scratch:
        if redis_url:
            flush_redis()
        try:
            return benchmark(args, scratch.home, world)
        finally:
            if redis_url:
                flush_redis()
            if not scratch.own_database:
                world.forget()


def flush_redis():
    from agents import queues

    queues.connection().flushdb()


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


def p50_p95(samples):
    """The median and the 95th percentile of `samples`."""
    cuts = quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94]


def counted(queries):
    """A database execute wrapper that notes each query's SQL in `queries`."""

    def wrapper(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    return wrapper


def timed_page(client, url, runs, warm=3):
    """GET url through a test Client: (p50 ms, p95 ms, the queries of one fetch)."""
    from django.db import connection

    for _ in range(warm):
        response = client.get(url)
        assert response.status_code == 200, f"{url}: HTTP {response.status_code}"
    queries = []
    with connection.execute_wrapper(counted(queries)):
        client.get(url)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
    p50, p95 = p50_p95(samples)
    return p50, p95, len(queries)


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


class Server:
    """gunicorn serving the project on a free local port, in its own process group."""

    def __init__(self, home, workers=2, timeout=30):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(home / "gunicorn.log", "w")  # closed in stop()
        self.proc = processes.spawn(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "corral.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "--timeout",
                str(timeout),
            ],
            cwd=ROOT,
            env=worker_env(home),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.proc.returncode}: see {self.log.name}")
            try:
                status, _ = self.request("GET", "/api/v1/openapi.json")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer in time")

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def cpu(self):
        """CPU seconds of the gunicorn workers (the master's children) so far."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        total = 0.0
        for pid in children.split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def request(self, method, path, token=None, body=None, conn=None):
        conn = conn or self.connection()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        # The sync worker closes every connection: http.client reopens it (a local connect).
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()

    def stop(self):
        if self.proc.poll() is None:
            processes.stop(self.proc, 10)
        self.log.close()

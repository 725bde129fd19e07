"""`manage.py up` with real processes: an embedded Redis, gunicorn, an RQ worker, the leads.

Each test runs `up` in its own CORRAL_HOME with SQLite and (except the last)
no REDIS_URL, so the embedded Redis is what gets tested. No test database is
used: `up` migrates its own, from nothing in a newcomer's first run and from
an already migrated copy (sqlite_home) in the others.
"""

import os
import re
import signal
import socket
import subprocess
import time
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode, urljoin
from urllib.request import HTTPCookieProcessor, Request, build_opener

import pytest
import redis
from rq import Worker

from tests.procs import Running, group_members

pytestmark = pytest.mark.slow

ADMIN = ("corral-admin", "a long test password 42")
START_TIMEOUT_S = 90
UP_LINE = r"^\d\d:\d\d:\d\d up +\| "  # the time and the process's name, as honcho prints
STOP_TIMEOUT_S = 40  # up's own grace is 10 s per stage


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Up(Running):
    """A running `manage.py up`, its output (stdout and stderr) collected line by line."""

    # FORCE_COLOR too: the tests read up's lines as a pipe gets them, without colour.
    UNSET = (
        "REDIS_URL",
        "DATABASE_URL",
        "CORRAL_ADMIN_USER",
        "CORRAL_ADMIN_PASSWORD",
        "FORCE_COLOR",
    )

    def __init__(self, home, *args, env=None, admin=ADMIN):
        full_env = {k: v for k, v in os.environ.items() if k not in self.UNSET}
        full_env.update(CORRAL_HOME=str(home), **(env or {}))
        if admin:
            full_env.update(CORRAL_ADMIN_USER=admin[0], CORRAL_ADMIN_PASSWORD=admin[1])
        self.home = home
        super().__init__(["manage.py", "up", *args], full_env, start_timeout=START_TIMEOUT_S)

    def children(self):
        """{name: pid} from up's own `started <name> (pid N)` lines."""
        return {
            m[1]: int(m[2])
            for m in re.finditer(UP_LINE + r"started (\S+) \(pid (\d+)\)$", self.output, re.M)
        }

    def said(self):
        """What up said itself, its lines without their prefix."""
        return [m[1] for m in re.finditer(UP_LINE + "(.*)$", self.output, re.M)]

    def wait(self, timeout=STOP_TIMEOUT_S):
        return super().wait(timeout)

    def assert_no_children_left(self):
        left = {name: group_members(pid) for name, pid in self.children().items()}
        assert not any(left.values()), f"processes left: {left}\n{self.output}"

    def cleanup(self):
        """Stop up and everything it started, even after a failed test."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in self.children().values():
            if group_members(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def start_up(tmp_path, sqlite_home):
    started = []

    def start(*args, env=None, admin=ADMIN, first_run=False):
        up = Up(tmp_path / "first" if first_run else sqlite_home, *args, env=env, admin=admin)
        started.append(up)
        return up

    yield start
    for up in started:
        up.cleanup()


def parent_of(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def open_url(opener, url, data=None):
    body = urlencode(data).encode() if data is not None else None
    with opener.open(Request(url, data=body), timeout=30) as response:
        return response.status, response.url, response.read().decode()


def test_up_runs_web_and_worker_and_stops_cleanly_on_ctrl_c(start_up):
    up = start_up("--port", str(free_port()), "--no-demo")
    url = up.wait_for(r"Corral is running at (http://\S+)")[1]
    assert f"created superuser {ADMIN[0]}" in up.said()
    opener = build_opener(HTTPCookieProcessor(CookieJar()))

    status, _, page = open_url(opener, urljoin(url, "login/"))
    assert status == 200
    htmx = re.search(r'<script[^>]+src="([^"]*htmx[^"]*\.js)"', page)
    assert htmx, page
    status, _, script = open_url(opener, urljoin(url, htmx[1]))
    assert status == 200 and "htmx" in script

    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    login = {"csrfmiddlewaretoken": token, "username": ADMIN[0], "password": ADMIN[1]}
    status, landed, page = open_url(opener, urljoin(url, "login/"), login)
    assert (status, landed) == (200, url)
    assert "<h1>Default</h1>" in page and f"Log out {ADMIN[0]}" in page

    connection = redis.Redis(unix_socket_path=str(up.home / "redis.sock"))
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(workers := Worker.all(connection=connection)) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    pids = up.children()
    queues_by_pid = {w.pid: set(w.queue_names()) for w in workers}
    lead_workers = {pid for pid, names in queues_by_pid.items() if names == {"lead"}}
    assert {pid: queues_by_pid[pid] for pid in set(queues_by_pid) - lead_workers} == {
        pids["worker"]: {"default"},
        pids["session-worker-1"]: {"sessions"},
        pids["session-worker-2"]: {"sessions"},
    }
    # The lead's fixed pool (CORRAL_LEAD_WORKERS, 2), forked by the lead supervisor.
    assert len(lead_workers) == 2 and {parent_of(pid) for pid in lead_workers} == {pids["lead"]}
    connection.close()

    assert set(up.children()) == {
        "redis",
        "web",
        "worker",
        "session-worker-1",
        "session-worker-2",
        "lead",
        "ticker",
    }
    os.kill(up.proc.pid, signal.SIGINT)
    assert up.wait() == 0, up.output
    up.assert_no_children_left()
    assert not (up.home / "redis.sock").exists()  # Redis shut down, not killed


def test_up_stops_everything_when_a_child_dies(start_up):
    up = start_up("--port", str(free_port()), "--no-demo")
    up.wait_for(r"Corral is running at ")
    os.kill(up.children()["worker"], signal.SIGKILL)
    up.wait_for(UP_LINE + r"worker exited with code -9\b")
    assert up.wait() != 0
    up.assert_no_children_left()


def test_up_names_redis_url_when_it_is_unreachable(start_up):
    url = f"redis://127.0.0.1:{free_port()}/0"
    up = start_up("--port", str(free_port()), "--no-demo", env={"REDIS_URL": url})
    assert up.wait(START_TIMEOUT_S) != 0
    lines = up.output.splitlines()
    assert "REDIS_URL" in lines[-1] and url in lines[-1], up.output
    assert sum("REDIS_URL" in line for line in lines) == 1, up.output
    assert "Traceback" not in up.output and not up.children()


def test_up_generates_an_admin_password_once(start_up):
    # An unreachable REDIS_URL stops `up` right after it has prepared the database.
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    first = start_up("--no-demo", env=env, admin=None)
    assert first.wait(START_TIMEOUT_S) != 0
    created = re.findall(r"created superuser admin with password (\S+)", first.output)
    assert len(created) == 1 and len(created[0]) >= 12, first.output

    again = start_up("--no-demo", env=env, admin=None)
    assert again.wait(START_TIMEOUT_S) != 0
    assert "superuser" not in again.output and created[0] not in again.output


def test_up_says_what_matters_one_line_each_and_sums_up_on_ctrl_c(start_up):
    up = start_up("--port", str(free_port()), admin=None, first_run=True)
    password = up.wait_for(UP_LINE + r"created superuser admin with password (\S+) ")[1]
    url = up.wait_for(UP_LINE + r"Corral is running at (http://\S+) \(log in as admin\)$")[1]
    assert len(password) >= 12 and url.startswith("http://127.0.0.1:")
    landed = up.wait_for(UP_LINE + r"landed (\S+) as ([0-9a-f]{10}) in (demo-\w+): “.+”$")
    bead, sha, slug = landed.groups()
    log = subprocess.run(
        ["git", "log", "--format=%H %s", "main"],
        cwd=up.home / "repos" / f"{slug}.git",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert re.search(rf"^{sha}[0-9a-f]{{30}} .*\({bead}\)$", log, re.M), log
    up.wait_for(UP_LINE + r"session started: demo-\d on \S+ “.+”$")
    up.wait_for(UP_LINE + r"session ended: demo-\d on \S+, handed in its work$")
    os.kill(up.proc.pid, signal.SIGINT)
    assert up.wait() == 0, up.output
    summary = re.search(
        UP_LINE + r"this run: (\d+) beads? landed, (\d+) refused, (\d+) waiting for review, "
        r"(\d+) sessions? run$",
        up.output,
        re.M,
    )
    assert summary and int(summary[1]) >= 1 and int(summary[4]) >= int(summary[1]), up.output
    assert up.said()[-1] == "stopped"
    # Every line names the process it came from; RQ, gunicorn and the ticker speak
    # only of trouble, and Redis into its log file.
    assert all(re.match(r"^\d\d:\d\d:\d\d \S+ +\| ", line) for line in up.lines), up.output
    for chatter in ("Job OK", "result discarded", "Listening on", "[INFO]", "tick:", "Redis is"):
        assert chatter not in up.output, chatter
    assert "Redis is starting" in (up.home / "redis.log").read_text()


def test_up_verbose_lets_rq_gunicorn_and_redis_say_everything(start_up):
    up = start_up("--port", str(free_port()), "--no-demo", "--verbose")
    up.wait_for(UP_LINE + r"Corral is running at ")
    up.wait_for(r"^\d\d:\d\d:\d\d web +\| .*\[INFO\] Listening at: http://127\.0\.0\.1:")
    up.wait_for(r"^\d\d:\d\d:\d\d worker +\| .*Listening on default")
    up.wait_for(r"^\d\d:\d\d:\d\d redis +\| .*Redis is starting")
    os.kill(up.proc.pid, signal.SIGINT)
    assert up.wait() == 0, up.output
    assert not (up.home / "redis.log").exists()

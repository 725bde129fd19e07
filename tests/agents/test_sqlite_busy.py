"""SQLite under sustained claims: a claim that cannot get the write lock in
CORRAL_CLAIM_LOCK_SECONDS answers 503 with Retry-After, never a 500; the
`corral` client waits as told (jittered) and tries again; two processes
hammering claims through a real gunicorn never see a 500 and never the same
bead twice. Its own site on its own SQLite file, whatever DATABASE_URL the
tests run on: this is SQLite's behaviour."""

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from corral_client.cli import Client
from workspace import processes

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BEADS = 150


@pytest.fixture
def site(sqlite_home, make_source):
    """A gunicorn (2 workers) over a fresh SQLite site; yields (url, tokens, slug, db)."""
    home = sqlite_home
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "DATABASE_"))}
    env.update(
        CORRAL_HOME=str(home), DJANGO_SETTINGS_MODULE="corral.settings", PYTHONPATH=str(ROOT),
        CORRAL_CLAIM_LOCK_SECONDS="1", REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:1/0"),
    )  # fmt: skip
    stock = Path(__file__).with_name("sqlite_site") / "stock.py"
    done = subprocess.run(
        [sys.executable, str(stock), str(make_source()), str(BEADS), "2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stocked = json.loads(done.stdout.splitlines()[-1])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (home / "gunicorn.log").open("w")
    gunicorn = Path(sys.executable).with_name("gunicorn")
    argv = [str(gunicorn), "corral.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    server = processes.spawn(
        [*argv, "--workers", "2"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url)
        yield url, stocked["tokens"], stocked["repo"], home / "corral.sqlite3"
    finally:
        processes.stop(server, 10)
        log.close()


def wait_up(url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/v1/openapi.json", timeout=5).read()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("gunicorn did not answer")


def raw_claim(url, token, repo):
    """POST claim once, no retries: (status, headers, body)."""
    request = urllib.request.Request(
        f"{url}/api/v1/claim?context=later",
        data=json.dumps({"repo": repo}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"{}")


def hold_write_lock(db, seconds):
    """Another writer: SQLite's write lock held for `seconds`, in a thread."""
    ready = threading.Event()

    def hold():
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(10)
    return thread


def test_a_claim_that_cannot_get_the_lock_is_503_with_retry_after(site):
    url, tokens, repo, db = site
    holder = hold_write_lock(db, 4)
    status, headers, body = raw_claim(url, tokens[0], repo)
    holder.join()
    assert status == 503, body
    assert int(headers["Retry-After"]) >= 1
    assert "busy" in body["detail"]
    assert raw_claim(url, tokens[0], repo)[0] == 200  # the lock free again: served


def test_the_client_waits_as_told_and_tries_again(site):
    url, tokens, repo, db = site
    holder = hold_write_lock(db, 2.5)
    started = time.monotonic()
    claimed = Client(url, tokens[0]).claim(repo)  # 503 first, then served
    holder.join()
    assert claimed["context"] and claimed["bead"]["repo"] == repo
    assert time.monotonic() - started >= 1.0  # it waited for the lock to go


def hammer(url, token, repo, seconds):
    """Claim as fast as possible for `seconds`: (statuses seen, beads claimed)."""
    statuses, beads = Counter(), []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, headers, body = raw_claim(url, token, repo)
        statuses[status] += 1
        if status == 200:
            beads.append(body["bead"]["id"])
        elif status == 409:
            break  # nothing left
        elif status == 503:
            time.sleep(float(headers.get("Retry-After", 1)) / 4)
    return statuses, beads


def test_two_processes_hammering_claims_never_see_a_500(site):
    url, tokens, repo, _ = site
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(hammer, [url] * 2, tokens, [repo] * 2, [20] * 2))
    statuses = sum((r[0] for r in results), Counter())
    beads = [b for r in results for b in r[1]]
    assert statuses[500] == 0 and set(statuses) <= {200, 409, 503}, statuses
    assert len(beads) == len(set(beads)) and beads  # never the same bead twice
    assert all(r[1] for r in results), "each claimer got some of the work"

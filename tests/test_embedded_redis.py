"""Under `pytest -n N` (`make test`) each xdist worker moves to a Redis database
of its own, so that one worker's flushdb() never empties another's queues."""

from types import SimpleNamespace

import pytest

from tests.embedded_redis import DATABASES, pytest_configure, with_database


def test_a_worker_moves_the_embedded_redis_socket_url_to_its_own_database():
    assert with_database("unix:///tmp/r/redis.sock", 1) == "unix:///tmp/r/redis.sock?db=1"
    assert (
        with_database("unix:///tmp/r/redis.sock?db=3&socket_timeout=2", 2)
        == "unix:///tmp/r/redis.sock?socket_timeout=2&db=5"
    )


def test_a_worker_counts_from_the_database_redis_url_names():
    assert with_database("redis://127.0.0.1:6379/2", 0) == "redis://127.0.0.1:6379/2"
    assert with_database("redis://127.0.0.1:6379/2", 1) == "redis://127.0.0.1:6379/3"
    assert with_database("rediss://:pw@cache:6380", 3) == "rediss://:pw@cache:6380/3"


def test_more_workers_than_the_redis_has_databases_stop_the_run_before_it_starts(
    monkeypatch, settings
):
    monkeypatch.setenv("REDIS_URL", settings.REDIS_URL)
    pytest_configure(SimpleNamespace(option=SimpleNamespace(numprocesses=2)))

    too_many = SimpleNamespace(option=SimpleNamespace(numprocesses=DATABASES + 1))
    with pytest.raises(pytest.UsageError, match=r"workers need Redis databases up to \d+"):
        pytest_configure(too_many)

"""SQLite lets one process write at a time. A request that cannot get the
write lock in time answers 503 with Retry-After (corral/api.py's handler, for
every route of the API) rather than a 500; a claim waits a
shorter time than other writes (CORRAL_CLAIM_LOCK_SECONDS), so claimers queue
in their clients, each retry jittered, instead of in SQLite's busy handler,
which favours the process that had the lock last.
"""

import random
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection

BUSY_STATUS = 503
BUSY_DETAIL = "The database is busy (another process holds its write lock): try again."


def is_locked(exc: BaseException) -> bool:
    """Whether a database error is SQLite's lock not had in time."""
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


def retry_after() -> int:
    """Seconds for the client to wait: 1 or 2, spread so retries do not all meet."""
    return random.choice((1, 1, 2))


@contextmanager
def claim_wait() -> Iterator[None]:
    """A claim waits CORRAL_CLAIM_LOCK_SECONDS for SQLite's write lock, not the
    connection's 30 s (PostgreSQL: unchanged, its claimers skip each other's rows)."""
    if connection.vendor != "sqlite":
        yield
        return
    normal = int(float(connection.settings_dict["OPTIONS"].get("timeout", 5)) * 1000)
    with connection.cursor() as cursor:
        cursor.execute(f"PRAGMA busy_timeout = {int(settings.CLAIM_LOCK_SECONDS * 1000)}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {normal}")

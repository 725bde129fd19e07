"""/healthz and /readyz: what a supervisor (`up`, docker compose, Kubernetes) asks.

/healthz says the process answers: no database, no Redis, nothing that could be
slow (a liveness probe must not restart a web process because the database
is down). /readyz says it can do its work: the database answers, every
migration on disk is applied, Redis answers. Each is 200 with JSON, or 503
naming the checks that failed, never a 500; neither needs a login.

HealthMiddleware answers both before the rest of the stack: no session, no
login, and no ALLOWED_HOSTS check (a probe calls at the pod's address, which
no operator lists). The answer says which check failed and no more (the
error's text, which may name hosts, goes to the log).
"""

import logging
from collections.abc import Callable
from functools import cache

import redis
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.migrations.loader import MigrationLoader
from django.http import HttpRequest, HttpResponse, JsonResponse

log = logging.getLogger(__name__)
TIMEOUT_S = 2.0  # a probe that hangs is worse than one that fails


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "alive"})


def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": database(), "migrations": "", "redis": redis_answers()}
    checks["migrations"] = migrations() if checks["database"] == "ok" else "not checked"
    failed = [name for name, said in checks.items() if said != "ok"]
    body = {"status": "unavailable" if failed else "ready", "failed": failed, "checks": checks}
    return JsonResponse(body, status=503 if failed else 200)


def database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as e:
        log.warning("readyz: the database does not answer: %s", first_line(e))
        connection.close_if_unusable_or_obsolete()
        return "unreachable"
    return "ok"


@cache
def on_disk() -> frozenset[tuple[str, str]]:
    """Every migration this code ships: read once per process, the files do not change."""
    return frozenset(MigrationLoader(None, ignore_no_migrations=True).disk_migrations)


def migrations() -> str:
    try:  # a savepoint: a failed read must not spoil a transaction around it
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT app, name FROM django_migrations")
            applied = set(cursor.fetchall())
    except DatabaseError as e:  # no django_migrations table: nothing is applied yet
        log.warning("readyz: cannot read the applied migrations: %s", first_line(e))
        return "not applied"
    missing = on_disk() - applied
    return f"{len(missing)} not applied" if missing else "ok"


@cache
def client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S
    )


def redis_answers() -> str:
    try:
        client().ping()
    except (redis.RedisError, OSError) as e:
        log.warning("readyz: Redis does not answer: %s", first_line(e))
        return "unreachable"
    return "ok"


def first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0]


PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": healthz,
    "/readyz": readyz,
}


class HealthMiddleware:
    """Answers the probes first (see the module's docstring); the rest passes on."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)

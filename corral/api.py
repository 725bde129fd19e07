"""The agents' API: one NinjaAPI under /api/v1/, each app mounting its router.

Agents authenticate with a bearer token; people with their own API token
(`crp_…`) or their dashboard login, acting with their role. Every error is
JSON `{"detail": …}` with a 4xx status.
"""

from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI

from agents.api import locked
from agents.api.auth import AgentToken, BrowserSession, PersonBearer
from agents.api.beads import router as agents_beads_router
from agents.api.changesets import router as changesets_router
from agents.api.comments import router as comments_router
from agents.api.learnings import router as learnings_router
from agents.api.plans import router as plans_router
from agents.api.reviews import router as reviews_router
from agents.api.sessions import router as sessions_router
from beads.api import router as beads_router
from knowledge.api import router as knowledge_router

api = NinjaAPI(
    title="Corral agent API",
    version="1",
    urls_namespace="api",
    auth=[AgentToken(), PersonBearer(), BrowserSession()],
)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Any unknown path under /api/v1/: JSON like every other error."""
    return api.create_response(request, {"detail": "No such endpoint."}, status=404)


@api.exception_handler(RequestDataTooBig)
def too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
    return api.create_response(request, {"detail": "The request body is too large."}, status=413)


@api.exception_handler(OperationalError)
def database_busy(request: HttpRequest, exc: Exception) -> HttpResponse:
    """SQLite's write lock not had in time (another process writes): 503 with
    Retry-After, for the client to try again, never a 500. Anything else the
    database said is re-raised."""
    if not locked.is_locked(exc):
        raise exc
    response = api.create_response(
        request, {"detail": locked.BUSY_DETAIL}, status=locked.BUSY_STATUS
    )
    response["Retry-After"] = str(locked.retry_after())
    return response


api.add_router("", beads_router)
api.add_router("", agents_beads_router)
api.add_router("", sessions_router)
api.add_router("", learnings_router)
api.add_router("", knowledge_router)
api.add_router("", changesets_router)
api.add_router("", comments_router)
api.add_router("", plans_router)
api.add_router("", reviews_router)

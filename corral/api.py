"""The agents' API: one NinjaAPI under /api/v1/, each app mounting its router.

Agents authenticate with a bearer token; a person logged in to the dashboard
may read. Every error is JSON `{"detail": …}` with a 4xx status.
"""

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI

from agents.api import router as agents_router
from agents.auth import AgentToken, BrowserSession
from agents.changeset_api import router as changesets_router
from agents.comments import router as comments_router
from beads.api import router as beads_router
from knowledge.api import router as knowledge_router

api = NinjaAPI(
    title="Corral agent API",
    version="1",
    urls_namespace="api",
    auth=[AgentToken(), BrowserSession()],
)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Any unknown path under /api/v1/: JSON like every other error."""
    return api.create_response(request, {"detail": "No such endpoint."}, status=404)


@api.exception_handler(RequestDataTooBig)
def too_big(request: HttpRequest, exc: Exception) -> HttpResponse:
    return api.create_response(request, {"detail": "The request body is too large."}, status=413)


api.add_router("", beads_router)
api.add_router("", agents_router)
api.add_router("", knowledge_router)
api.add_router("", changesets_router)
api.add_router("", comments_router)

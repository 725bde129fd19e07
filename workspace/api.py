"""The agents' API: one NinjaAPI under /api/v1/, each app mounting its router.

Agents authenticate with a bearer token; a person logged in to the dashboard
may read. Every error is JSON `{"detail": …}` with a 4xx status.
"""

from django.core.exceptions import RequestDataTooBig
from ninja import NinjaAPI
from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth

from agents.models import Agent


class AgentToken(HttpBearer):
    def authenticate(self, request, token):
        agent = Agent.objects.authenticate(token)
        if agent is not None:
            request.agent = agent
        return agent


class BrowserSession(SessionAuth):
    """A person's dashboard login. Asked only when someone is logged in, so a
    request with no or a bad token gets 401, not a CSRF failure's 403."""

    def __call__(self, request):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


def the_agent(request):
    """The calling agent; a person's browser session may read but not act as one."""
    agent = getattr(request, "agent", None)
    if agent is None:
        raise HttpError(403, "Only an agent can do this: call with its bearer token.")
    return agent


def may_act_on(agent, session):
    """An agent acts on its own sessions; a session token on its one session."""
    only = getattr(agent, "only_session", None)
    return session.agent_id == agent.pk and (only is None or only == session.pk)


api = NinjaAPI(
    title="Corral agent API",
    version="1",
    urls_namespace="api",
    auth=[AgentToken(), BrowserSession()],
)


def not_found(request, exception=None):
    """Any unknown path under /api/v1/: JSON like every other error."""
    return api.create_response(request, {"detail": "No such endpoint."}, status=404)


@api.exception_handler(RequestDataTooBig)
def too_big(request, exc):
    return api.create_response(request, {"detail": "The request body is too large."}, status=413)


def mount():
    from agents.api import router as agents_router
    from beads.api import router as beads_router
    from knowledge.api import router as knowledge_router

    api.add_router("", beads_router)
    api.add_router("", agents_router)
    api.add_router("", knowledge_router)


mount()

"""Who calls the agents' API: an agent by its bearer token, or a person by
their dashboard login (who may read, write only as their role allows, and
never act as an agent)."""

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth

from agents.models import Agent, Session
from workspace import roles

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class AgentToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Agent | None:
        agent = Agent.objects.authenticate(token)
        if agent is not None:
            request.agent = agent  # type: ignore[attr-defined]
        return agent


class BrowserSession(SessionAuth):
    """A person's dashboard login. Asked only when someone is logged in, so a
    request with no or a bad token gets 401, not a CSRF failure's 403."""

    def __call__(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        """The person, once the CSRF check passed; a write needs the operator role."""
        user = super().authenticate(request, key)
        if user is not None and request.method not in SAFE_METHODS:
            if not user.has_perm(roles.API_WRITE):
                raise HttpError(403, roles.refusal(roles.API_WRITE))
        return user


def the_agent(request: HttpRequest) -> Agent:
    """The calling agent; a person's browser session may read but not act as one."""
    agent = getattr(request, "agent", None)
    if agent is None:
        raise HttpError(403, "Only an agent can do this: call with its bearer token.")
    return agent


def may_act_on(agent: Agent, session: Session) -> bool:
    """An agent acts on its own sessions; a session token on its one session."""
    only = getattr(agent, "only_session", None)
    return session.agent_id == agent.pk and (only is None or only == session.pk)

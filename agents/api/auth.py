"""Who calls the agents' API: an agent by its bearer token; a person by their
own bearer token (workspace/tokens.py, for scripts and CI) or by their
dashboard login. A person reads as their role allows, writes only as it
allows, and never acts as an agent: the routes an agent calls (claim,
submit, …) refuse a person, whatever the token."""

from typing import Any

from django.http import HttpRequest
from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth

from agents.models import Agent, Session
from workspace import roles
from workspace.tokens import PersonToken

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class AgentToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Agent | None:
        agent = Agent.objects.authenticate(token)
        if agent is not None:
            request.agent = agent  # type: ignore[attr-defined]
        return agent


class PersonBearer(HttpBearer):
    """A person's API token: the request is theirs (request.user), with their
    role, and needs no CSRF token (no browser sends it on its own)."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        person = PersonToken.objects.authenticate(token)
        if person is None:
            return None
        request.user = person
        return admitted(request, person)


class BrowserSession(SessionAuth):
    """A person's dashboard login. Asked only when someone is logged in, so a
    request with no or a bad token gets 401, not a CSRF failure's 403."""

    def __call__(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        """The person, once the CSRF check passed."""
        user = super().authenticate(request, key)
        return admitted(request, user) if user is not None else None


def admitted(request: HttpRequest, person: Any) -> Any:
    """The person, if their role lets them in: no role reads nothing, and a
    write needs the operator role (each route asks for its own permission too)."""
    if roles.role_of(person) is None:
        raise HttpError(403, roles.NO_ROLE)
    if request.method not in SAFE_METHODS and not person.has_perm(roles.API_WRITE):
        raise HttpError(403, roles.refusal(roles.API_WRITE))
    return person


def the_agent(request: HttpRequest) -> Agent:
    """The calling agent; a person (by token or login) may read but not act as one."""
    agent = getattr(request, "agent", None)
    if agent is None:
        raise HttpError(
            403, "Only an agent can do this: call with its bearer token, not a person's."
        )
    return agent


def the_person(request: HttpRequest, perm: str) -> Any:
    """The calling person, if their role holds `perm`; an agent is refused:
    reviewing, planning and editing beads by hand are people's work."""
    if getattr(request, "agent", None) is not None:
        raise HttpError(403, "Only a person can do this: call with your own API token.")
    if not request.user.has_perm(perm):
        raise HttpError(403, roles.refusal(perm))
    return request.user


def may_act_on(agent: Agent, session: Session) -> bool:
    """An agent acts on its own sessions; a session token on its one session."""
    only = getattr(agent, "only_session", None)
    return session.agent_id == agent.pk and (only is None or only == session.pk)

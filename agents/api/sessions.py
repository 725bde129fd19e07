"""The session routes of the agents' API: claim, heartbeat, log, usage, submit,
release. An agent acts only on its own sessions.
"""

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict

from agents import patches
from agents.api import locked
from agents.api.auth import may_act_on, the_agent
from agents.jobs import limit_reader
from agents.models import Agent, ReviewComment, Session, StateError, review_pack_text, usage
from agents.moves import lifecycle
from agents.reports import budgets
from beads import hook
from beads.api import (
    BeadDetail,
    Line,
    Text,
    repository_or_404,
    with_dependencies,
)
from beads.models import Bead
from knowledge import inject
from workspace import gitops
from workspace.models import Repository

router = Router(tags=["sessions"])
MAX_LOG_CHARS = 64_000


# The summary goes into a commit message: no control characters but newlines,
# tabs and carriage returns (a CRLF handoff), none of DEL or C1 either.
Summary = Annotated[str, Field(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]
TokenCount = Annotated[int, Field(ge=0, le=usage.MAX_TOKENS)]


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


class ClaimIn(Strict):
    repo: str | None = Field(None, description="claim only from this repository (slug)")
    bead: str | None = Field(None, description="claim this bead, if it is ready")


class ClaimOut(Schema):
    session: UUID
    bead: BeadDetail
    context: str | None = Field(
        ...,
        description="the context pack; null when the claim said `context=later`: "
        "fetch it from `context_url`",
    )
    context_url: str = Field(..., description="GET it for the context pack (its own session only)")
    clone_url: str
    branch: str
    base_sha: str
    lease_expires_at: datetime


class LeaseOut(Schema):
    session: UUID
    status: str
    lease_expires_at: datetime | None


class LogIn(Strict):
    # Output keeps its escapes and tabs, but a NUL cannot be stored (PostgreSQL).
    text: Annotated[str, Field(pattern=r"^[^\x00]*$")] = Field(..., max_length=MAX_LOG_CHARS)


class SubmittedLearning(Strict):
    title: Line = Field(..., min_length=1, max_length=200)
    body: Text = Field(..., min_length=1)
    tags: list[Line] = []


class SubmitIn(Strict):
    patch: str = Field(..., description="`git diff --binary` against the base SHA")
    summary: Summary = Field("", description="the handoff: what was done, what is left")
    learnings: list[SubmittedLearning] = []


class SubmitOut(Schema):
    submission: int
    status: str
    changed_files: list[str]


class ReleaseIn(Strict):
    reason: Text = Field(..., min_length=1, max_length=2000)
    rate_limited_until: datetime | None = Field(
        None,
        description="the agent hit a rate limit that resets then (ISO 8601; no zone: UTC): "
        "the session ends paused, no attempt is counted, and the agent claims nothing "
        "until then",
    )


def own_session(request: HttpRequest, session_id: UUID) -> Session:
    """The caller's session: 404 if none, 403 if it is another agent's."""
    agent = the_agent(request)
    session = get_object_or_404(Session.objects.select_related("bead", "agent"), pk=session_id)
    if not may_act_on(agent, session):
        raise HttpError(403, "This session belongs to another agent.")
    return session


def lease_of(session: Session) -> dict[str, Any]:
    return {
        "session": session.pk,
        "status": session.status,
        "lease_expires_at": session.lease_expires_at,
    }


CONTEXT_LATER = "later"
CONTEXT_HEADER = "X-Corral-Context"


def context_later(request: HttpRequest) -> bool:
    """Whether the claimer fetches the pack itself (`?context=later`, or the header
    `X-Corral-Context: later`). Clients from before the context route leave both
    out and get the pack in the claim's answer, for one more release."""
    asked = request.GET.get("context") or request.headers.get(CONTEXT_HEADER, "")
    return asked.strip().lower() == CONTEXT_LATER


@router.post(
    "claim",
    response=ClaimOut,
    summary="Claim one ready bead",
    description="The answer carries the context pack unless the query says `context=later` "
    "(or the header `X-Corral-Context: later`): the claim then costs its one statement and "
    "the pack is fetched with `GET sessions/{id}/context`. Without it the pack is built in "
    "the answer, as before (old clients; this goes in the next release).",
)
def claim(request: HttpRequest, data: ClaimIn) -> dict[str, Any]:
    agent = the_agent(request)
    if getattr(agent, "only_session", None):
        raise HttpError(403, "A session token cannot claim more work.")
    repo = repository_or_404(data.repo)
    bead = get_object_or_404(Bead, pk=data.bead) if data.bead else None
    with locked.claim_wait():
        session = claim_within_budgets(agent, repo, bead)
    bead = with_dependencies(session.bead)
    context = None if context_later(request) else context_of(session)
    return {
        "session": session.pk,
        "bead": bead,
        "context": context,
        "context_url": request.build_absolute_uri(f"/api/v1/sessions/{session.pk}/context"),
        # Where the agent reached the API, git over HTTP answers too (agents/api/git_http.py).
        "clone_url": request.build_absolute_uri(f"/git/{bead.repository.slug}.git"),
        "branch": bead.repository.branch,
        "base_sha": session.base_sha,
        "lease_expires_at": session.lease_expires_at,
    }


def context_of(session: Session) -> str:
    """The session's context pack: built once, on the first ask (the pack's
    records, injections and uses, and the session's copy of it in one commit);
    asked again, or by two calls at once, the pack that was kept."""
    if session.context_chars:
        return session.context
    with transaction.atomic():
        review = review_pack_text(ReviewComment.pending_for(session.bead_id))
        context = inject.render_context(session, session.agent.context_budget_chars, review=review)
        if session.keep_context(context):
            return context
        transaction.set_rollback(True)  # another call kept its pack first: not these records
    session.refresh_from_db(fields=["context", "context_chars"])
    return session.context


class ContextOut(Schema):
    session: UUID
    bead: str
    context: str


@router.get(
    "sessions/{session_id}/context",
    response=ContextOut,
    summary="The session's context pack",
    description="What the agent works from (the bead, its scope, comments, the previous "
    "handoff, ranked learnings), built on the first call; the same text on every call after.",
)
def context(request: HttpRequest, session_id: UUID) -> dict[str, Any]:
    session = own_session(request, session_id)
    if session.status not in Session.LIVE and not session.context_chars:
        raise HttpError(409, f"The session is {session.status}: it has no context pack.")
    return {"session": session.pk, "bead": session.bead_id, "context": context_of(session)}


def claim_within_budgets(agent: Agent, repo: Repository | None, bead: Bead | None) -> Session:
    """lifecycle.claim, as dispatch would make it: 429 for an agent or a repository
    whose day is spent; a claim anywhere passes over the spent repositories."""
    if not budgets.any_set():
        return claim_or_409(agent, repo, bead, None, set())
    into = bead.repository if bead is not None else repo
    if refusal := budgets.claim_refusal(agent, into):
        raise HttpError(429, refusal)
    spent = budgets.spent_repositories() if into is None else set()
    within = None
    if spent:
        within = list(Repository.objects.exclude(pk__in=spent).values_list("pk", flat=True))
    return claim_or_409(agent, repo, bead, within, spent)


def claim_or_409(
    agent: Agent,
    repo: Repository | None,
    bead: Bead | None,
    within: list[int] | None,
    spent: set[int],
) -> Session:
    """lifecycle.claim; 409 with the hook's words when nothing can be claimed
    (429 when what is ready is in repositories whose budget is spent)."""
    try:
        return lifecycle.claim(agent, repository=repo, bead=bead, repositories=within)
    except (hook.NothingReady, hook.NotClaimable) as e:
        if spent and hook.first_ready(1, repositories=list(spent)):
            names = ", ".join(
                Repository.objects.filter(pk__in=spent).values_list("name", flat=True)
            )
            raise HttpError(429, f"{e}: the budget for today is spent in {names}.") from None
        raise HttpError(409, str(e)) from None


@router.post("sessions/{session_id}/heartbeat", response=LeaseOut, summary="Extend the lease")
def heartbeat(request: HttpRequest, session_id: UUID) -> dict[str, Any]:
    session = own_session(request, session_id)
    if not session.heartbeat():
        raise HttpError(409, f"The session is {session.status}: its lease cannot be extended.")
    return lease_of(session)


@router.post("sessions/{session_id}/log", summary="Append to the live log")
def log(request: HttpRequest, session_id: UUID, data: LogIn) -> dict[str, int]:
    session = own_session(request, session_id)
    if session.status not in Session.LIVE:
        raise HttpError(409, f"The session is {session.status}.")
    session.heartbeat()  # output is a sign of life
    return {"seq": session.append_agent_log(data.text)}


class UsageIn(Strict):
    input: TokenCount = Field(0, description="input tokens, not counting cache reads")
    output: TokenCount = 0
    cache_read: TokenCount = 0
    cache_write: TokenCount = 0
    model: Line = Field(usage.UNKNOWN_MODEL, min_length=1, max_length=100)


class UsageOut(Schema):
    session: UUID
    tokens: dict[str, dict[str, int]] = Field(..., description="{model: {kind: tokens}}")


@router.post("sessions/{session_id}/usage", response=UsageOut, summary="Report tokens used")
def report_usage(request: HttpRequest, session_id: UUID, data: UsageIn) -> dict[str, Any]:
    """Adds to what the session's agent has reported so far (the `reported`
    channel; what Corral parses from a CLI's own output is kept apart)."""
    session = own_session(request, session_id)
    if session.status not in Session.LIVE:
        raise HttpError(409, f"The session is {session.status}: it no longer reports usage.")
    more = usage.Counts(data.input, data.output, data.cache_read, data.cache_write)
    if problem := usage.implausible(more, settings.USAGE_REPORT_MAX_TOKENS):
        raise HttpError(422, problem)
    usage.TokenUsage.report(session.pk, data.model.strip(), more)
    return {"session": session.pk, "tokens": usage.TokenUsage.totals_by_model(session.usage.all())}


@router.post(
    "sessions/{session_id}/submit",
    response={201: SubmitOut},
    summary="Queue the patch for the lead",
)
def submit(request: HttpRequest, session_id: UUID, data: SubmitIn) -> Status[dict[str, Any]]:
    session = own_session(request, session_id)
    # surrogatepass: a lone surrogate is counted here and refused by parse() below.
    if len(data.patch.encode("utf-8", "surrogatepass")) > settings.MAX_PATCH_BYTES:
        raise HttpError(413, f"The patch is over {settings.MAX_PATCH_BYTES} bytes.")
    repository = session.bead.repository
    # Before git reads it: a few lines of a binary hunk can declare gigabytes.
    if too_big := patches.declared_over(data.patch, repository.max_blob_bytes):
        raise HttpError(413, "Refused before git read it: " + "; ".join(too_big[:5]))
    try:
        patches.parse(data.patch)
        # What the lead will do with it: git reads it and applies it to the base.
        gitops.check_patch(repository.canonical_path, session.base_sha, data.patch)
    except patches.PatchError as e:
        raise HttpError(400, str(e)) from None
    except gitops.GitError as e:
        raise HttpError(
            400, f"git cannot apply the patch to {session.base_sha[:12]}: {e}"
        ) from None
    learnings = [item.model_dump() for item in data.learnings]
    try:
        submission = lifecycle.hand_in(session, data.patch, data.summary, learnings)
    except StateError as e:
        raise HttpError(409, str(e)) from None
    return Status(
        201,
        {
            "submission": submission.pk,
            "status": submission.status,
            "changed_files": session.changed_files,
        },
    )


@router.post("sessions/{session_id}/release", response=LeaseOut, summary="Give the bead back")
def release(request: HttpRequest, session_id: UUID, data: ReleaseIn) -> dict[str, Any]:
    session = own_session(request, session_id)
    until = reset_of(data.rate_limited_until)
    if not lifecycle.release(session, data.reason, until):
        raise HttpError(409, f"The session is {session.status}: there is nothing to release.")
    return lease_of(session)


def reset_of(until: datetime | None) -> datetime | None:
    """A rate limit's reset as given: aware (UTC if no zone was given), not in
    the past, and within a week (422 past it: a person resumes sooner)."""
    if until is None:
        return None
    if timezone.is_naive(until):
        until = until.replace(tzinfo=UTC)
    now = timezone.now()
    if until > now + limit_reader.LONGEST_WAIT:
        days = limit_reader.LONGEST_WAIT.days
        raise HttpError(422, f"rate_limited_until is more than {days} days away.")
    return max(until, now)

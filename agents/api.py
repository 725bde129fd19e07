from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict

from agents import flow, patches, usage
from agents.auth import may_act_on, the_agent
from agents.models import Session, StateError
from beads import hook
from beads.api import (
    BeadDetail,
    BeadIn,
    Line,
    Text,
    field_errors,
    repository_or_404,
    with_dependencies,
)
from beads.api import router as beads_router
from beads.models import Bead
from knowledge import capture, feedback, inject
from knowledge.models import Learning
from workspace import gitops
from workspace.models import Workspace
from workspace.scrub import scrub

router = Router(tags=["sessions"])
MAX_LOG_CHARS = 64_000


class Strict(Schema):
    model_config = ConfigDict(extra="forbid")


class ClaimIn(Strict):
    repo: str | None = Field(None, description="claim only from this repository (slug)")
    bead: str | None = Field(None, description="claim this bead, if it is ready")


class ClaimOut(Schema):
    session: UUID
    bead: BeadDetail
    context: str
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


# The summary goes into a commit message: no control characters but newlines,
# tabs and carriage returns (a CRLF handoff), none of DEL or C1 either.
Summary = Annotated[str, Field(pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$")]


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


@router.post("claim", response=ClaimOut, summary="Claim one ready bead")
def claim(request: HttpRequest, data: ClaimIn) -> dict[str, Any]:
    agent = the_agent(request)
    if getattr(agent, "only_session", None):
        raise HttpError(403, "A session token cannot claim more work.")
    repo = repository_or_404(data.repo)
    bead = get_object_or_404(Bead, pk=data.bead) if data.bead else None
    try:
        session = flow.claim(agent, repository=repo, bead=bead)
    except (hook.NothingReady, hook.NotClaimable) as e:
        raise HttpError(409, str(e)) from None
    bead = with_dependencies(session.bead)
    # The pack's records (injections, uses) and the session's copy of it: one commit.
    with transaction.atomic():
        context = inject.render_context(session, agent.context_budget_chars)
        session.record_context("", context)
    return {
        "session": session.pk,
        "bead": bead,
        "context": context,
        # Where the agent reached the API, git over HTTP answers too (agents/git_http.py).
        "clone_url": request.build_absolute_uri(f"/git/{bead.repository.slug}.git"),
        "branch": bead.repository.branch,
        "base_sha": session.base_sha,
        "lease_expires_at": session.lease_expires_at,
    }


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
    return {"seq": session.append_log(data.text)}


TokenCount = Annotated[int, Field(ge=0, le=usage.MAX_TOKENS)]


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
    try:
        patches.parse(data.patch)
        # What the lead will do with it: git reads it and applies it to the base.
        gitops.check_patch(session.bead.repository.canonical_path, session.base_sha, data.patch)
    except patches.PatchError as e:
        raise HttpError(400, str(e)) from None
    except gitops.GitError as e:
        raise HttpError(
            400, f"git cannot apply the patch to {session.base_sha[:12]}: {e}"
        ) from None
    learnings = [item.model_dump() for item in data.learnings]
    try:
        submission = flow.hand_in(session, data.patch, data.summary, learnings)
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
    if not flow.release(session, data.reason):
        raise HttpError(409, f"The session is {session.status}: there is nothing to release.")
    return lease_of(session)


class LearningIn(Strict):
    title: Line = Field(..., min_length=1, max_length=200)
    body: Text = Field(..., min_length=1)
    tags: list[Line] = []
    repo: str | None = None
    session: UUID | None = Field(None, description="the session it came from, if any")


class LearningOut(Schema):
    id: int
    title: str
    status: str


@router.post(
    "learnings",
    response={201: LearningOut},
    summary="Propose a learning",
    tags=["knowledge"],
    operation_id="knowledge_api_propose",  # its id from before it moved here
)
def propose(request: HttpRequest, data: LearningIn) -> Status[Learning]:
    agent = the_agent(request)
    session = None
    if data.session:
        session = get_object_or_404(Session, pk=data.session)
        if not may_act_on(agent, session):
            raise HttpError(403, "This session belongs to another agent.")
    repository = repository_or_404(data.repo) or (session.bead.repository if session else None)
    workspace = repository.workspace if repository else Workspace.default()
    learning = capture.propose(
        workspace,
        repository,
        data.title,
        data.body,
        tags=data.tags,
        source={"kind": "api", "agent": agent.name},
        session=session,
    )
    return Status(201, learning)


class MarkIn(Strict):
    helpful: bool
    reason: Text = Field("", max_length=2000)
    session: UUID | None = Field(None, description="the session it was given in, if any")


class MarkOut(Schema):
    id: int
    status: str
    utility: float
    helpful: int
    harmful: int
    retired_reason: str


@router.post(
    "learnings/{learning_id}/feedback",
    response=MarkOut,
    summary="Mark a learning you were given helpful or harmful",
    tags=["knowledge"],
)
def mark_learning(request: HttpRequest, learning_id: int, data: MarkIn) -> Learning:
    agent = the_agent(request)
    learning = get_object_or_404(Learning, pk=learning_id)
    session_id = data.session or getattr(agent, "only_session", None)
    session = own_session(request, session_id) if session_id else None
    try:
        feedback.mark_by_agent(learning, agent, data.helpful, data.reason, session)
    except feedback.NotGiven as e:
        raise HttpError(403, str(e)) from None
    learning.refresh_from_db()
    return learning


# Beads as the caller may see and file them. Declared on the beads router, where
# `GET beads` lives (Django sends a path to the first router that has it), but
# here, because both depend on the caller's sessions.


def may_see_failure(request: HttpRequest, bead: Bead) -> bool:
    """Why a bead's last attempt failed quotes gate output, which may hold what
    the agent's code printed: only people and the agents working on the bead
    see it."""
    agent = getattr(request, "agent", None)
    if agent is None:
        return bool(request.user.is_authenticated)
    return flow.holds_live_session(agent, bead)


@beads_router.get(
    "beads/{bead_id}",
    response=BeadDetail,
    summary="Show one bead",
    operation_id="beads_api_show_bead",
)
def show_bead(request: HttpRequest, bead_id: str) -> Bead:
    bead = get_object_or_404(Bead.objects.select_related("repository"), pk=bead_id)
    # Scrubbed when stored; again here for rows stored before scrubbing was.
    bead.last_failure = scrub(bead.last_failure) if may_see_failure(request, bead) else ""
    return with_dependencies(bead)


@beads_router.post(
    "beads",
    response={201: BeadDetail},
    summary="Create a bead",
    description="A person's bead is open. An agent's must be discovered_from a bead it holds "
    "a live session on; it goes to that bead's repository, its scope must lie within that "
    "bead's, and it is proposed (not ready) until a person accepts it, unless the repository "
    "lets agents file ready beads.",
    operation_id="beads_api_create_bead",
)
def create_bead(request: HttpRequest, data: BeadIn) -> Status[Bead]:
    parent = get_object_or_404(Bead, pk=data.discovered_from) if data.discovered_from else None
    repo = repository_or_404(data.repo) or (parent.repository if parent else None)
    if repo is None:
        raise HttpError(422, "Give repo, or discovered_from to file it beside that bead.")
    bead = Bead(repository=repo, **data.dict(exclude={"repo", "discovered_from"}))
    try:
        bead.full_clean(exclude=["id"])
        flow.file_bead(bead, parent, agent=getattr(request, "agent", None), person=request.user)
    except flow.FilingRefused as e:
        raise HttpError(403, str(e)) from None
    except ValidationError as e:
        raise HttpError(422, field_errors(e)) from None
    return Status(201, with_dependencies(bead))

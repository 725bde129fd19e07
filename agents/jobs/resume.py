"""A session starts where the bead's last one stopped.

The newest salvage of the bead (work a session left without handing in, kept
by agents/jobs/salvage.py, since the bead's last hand-in) is carried onto the
new session's base three-way, as the lead applies a patch, and its files put
in the clone before the agent runs, as if the agent had written them. When it
no longer applies, reaches outside the bead's scope as it is now, or is over
the agent's caps, it is offered as `.agents/salvage.patch` instead. The
context pack says what the previous session did and why it stopped. A CLI
that can resume its own conversation (agents/presets.py) is given the
previous session's when the same agent takes the bead again.
"""

import json
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Max, QuerySet
from django.utils import timezone

from agents import presets
from agents.jobs import salvage as salvages
from agents.models import Salvage, Session
from workspace import gitops

PATCH_FILE = "salvage.patch"  # in .agents/
FILES_NAMED = 20  # files a context pack names


@dataclass
class Resume:
    """What a new session starts from: the context pack's section on the
    previous session, the patch it is offered, the CLI conversation it resumes."""

    text: str = ""
    patch: bytes = b""
    conversation: str = ""
    lines: list[str] = field(default_factory=list)


def start(session: Session, workdir: Path, source: Path) -> Resume:
    """Put the newest salvage in the fresh clone at `workdir` (cloned from
    `source`), or offer it; say so, and what the previous session did."""
    wait_for_salvages(session)
    resume = Resume()
    rows = since_last_hand_in(session)
    last = rows.select_related("session__agent").first()
    work = rows.exclude(sha="").select_related("session__agent").first()
    if last is not None:
        resume.lines.append(stopped_line(last))
    if work is not None:
        if work != last:
            earlier = f"{work.session.agent.name}'s session {str(work.session_id)[:8]}"
            resume.lines.append(f"The newest work kept is from {earlier}: it changed {size(work)}")
        try:
            resume.lines.append(carry(session, work, workdir, source, resume))
        except gitops.GitError as e:  # the session starts all the same, from the branch
            resume.lines.append(f"Its work (salvage {work.sha[:12]}) could not be given: {e}")
    resume.conversation = conversation_to_resume(session, workdir)
    if resume.conversation:
        resume.lines.append(
            f"Your CLI resumes its own conversation from then ({resume.conversation})."
        )
    if resume.lines:
        resume.text = "## Where the previous session stopped\n\n" + "\n\n".join(resume.lines) + "\n"
    return resume


def wait_for_salvages(session: Session) -> None:
    """A session of the bead that ended a moment ago may still be winding down
    (cancelled, or lost, while its runner or reconcile() keeps its work): wait,
    within bounds, until its salvage is written, so this one starts from it."""
    bound = settings.KILL_GRACE_SECONDS + 2 * settings.WATCH_INTERVAL_SECONDS + 5
    since = timezone.now() - timedelta(seconds=bound)
    owed = Session.objects.filter(
        bead=session.bead_id,
        status__in=Session.ENDINGS,
        ended_at__gte=since,
        pid__isnull=False,  # an agent ran: its runner keeps what it did
        salvage__isnull=True,
        submission__isnull=True,
    ).exclude(pk=session.pk)
    deadline = time.monotonic() + bound
    while owed.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def since_last_hand_in(session: Session) -> QuerySet[Salvage]:
    """The bead's salvages, newest first, made after its last hand-in: work
    handed in since was judged by the lead, and an older salvage is behind it."""
    handed = Session.objects.filter(bead=session.bead_id, submission__isnull=False)
    last_hand_in = handed.aggregate(at=Max("created_at"))["at"]
    rows = Salvage.objects.filter(bead=session.bead_id).exclude(session=session)
    if last_hand_in is not None:
        rows = rows.filter(session__created_at__gt=last_hand_in)
    return rows.order_by("-created_at", "-pk")


def stopped_line(row: Salvage) -> str:
    """Who stopped, how and why; what it changed, or why nothing was kept."""
    previous = row.session
    status = (
        Session.Status(row.stopped).label.lower() if row.stopped in Session.Status.values else ""
    )
    head = f"{previous.agent.name}'s session {str(previous.pk)[:8]} stopped ({status}): {row.why}"
    done = f"It changed {size(row)}" if row.kept else row.note
    if row.left_out:
        outside = ", ".join(f"`{p}`" for p in row.left_out[:FILES_NAMED])
        done += f" It also wrote outside the scope, which was not kept: {outside}."
    return f"{head}\n{done}"


def size(row: Salvage) -> str:
    added, removed = row.summary.get("added", 0), row.summary.get("removed", 0)
    named = ", ".join(f"`{p}`" for p in row.files[:FILES_NAMED])
    more = f" and {len(row.files) - FILES_NAMED} more" if len(row.files) > FILES_NAMED else ""
    return f"{len(row.files)} file(s) (+{added} −{removed}): {named}{more}."


def carry(session: Session, work: Salvage, workdir: Path, source: Path, resume: Resume) -> str:
    """Apply the salvage to the clone, or offer it as a patch; the line that says which."""
    ref = f"(salvage {work.sha[:12]}, `{work.ref}`)"
    if not gitops.has_commit(source, work.sha):
        return f"Its work {ref} is not reachable from this worker: start from the branch."
    reason = refusal(session, work)
    if not reason:
        try:
            tree = gitops.salvage_onto(source, work.sha, session.base_sha)
            gitops.put_tree_in_clone(workdir, session.base_sha, tree)
        except gitops.MergeConflict as e:
            reason = f"it no longer applies to the current head ({e})"
        except gitops.GitError as e:
            reason = f"it could not be applied ({e})"
        else:
            return (
                f"Its work {ref} is already in your clone, carried onto the current head: "
                "you start where it stopped (`git status` shows it). Finish it."
            )
    resume.patch = gitops.salvage_patch(source, work.sha)
    return (
        f"Its work {ref} is not in your clone: {reason}. It is in `.agents/{PATCH_FILE}`, "
        f"made against {work.base_sha[:12]}: take what still fits "
        f"(`git apply --3way .agents/{PATCH_FILE}` tries all of it)."
    )


def refusal(session: Session, work: Salvage) -> str:
    """Why the salvage is offered rather than applied, or "" to apply it."""
    outside = salvages.outside_scope(session.bead, list(work.files))
    if outside:
        return "the bead's scope no longer covers " + ", ".join(outside[:FILES_NAMED])
    agent = session.agent
    if len(work.files) > agent.max_changed_files or work.lines > agent.max_changed_lines:
        caps = f"{agent.max_changed_files} files, {agent.max_changed_lines} lines"
        return f"it is over your caps ({caps})"
    return ""


def conversation_to_resume(session: Session, workdir: Path) -> str:
    """The previous session's CLI conversation, when that session was this
    agent's, its preset can resume one and the transcript is on this machine."""
    if presets.conversation(session.agent.preset) is None:
        return ""
    earlier = Session.objects.filter(
        bead=session.bead_id, created_at__lt=session.created_at, started_at__isnull=False
    )
    previous = earlier.exclude(pk=session.pk).order_by("-created_at").first()
    if previous is None or previous.agent_id != session.agent_id or not previous.cli_session:
        return ""
    if not presets.carry_transcript(session.agent.preset, previous.cli_session, workdir):
        return ""
    return previous.cli_session


class ConversationReader:
    """Reads a CLI's JSON output line by line for the id of its conversation."""

    def __init__(self, preset: str) -> None:
        self.preset = preset
        self.active = presets.conversation(preset) is not None
        self.partial = ""
        self.found = ""

    def feed(self, text: str) -> str | None:
        """Take more output (any split); the conversation id when it is new."""
        if not self.active:
            return None
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()[-1_000_000:]
        new = None
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            found = presets.conversation_in(self.preset, event)
            if found and found != self.found:
                self.found = new = found
        return new

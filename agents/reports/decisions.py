"""The next decisions a person must make, each one click away: lessons a bead's
refusal taught, waiting for approval before its next try; submissions waiting
for review; blocked beads; and beads whose last check failed."""

from dataclasses import dataclass

from django.db.models import Count

from agents.models import GateResult, Submission
from beads.models import MAX_ATTEMPTS, Bead
from knowledge.models import Learning
from workspace.failures import headline
from workspace.models import Workspace

SHOWN = 10  # of each kind
HEADLINE_CHARS = 200
# A bead still to land, whose failures a lesson may help.
TRYING = [Bead.Status.OPEN, Bead.Status.IN_PROGRESS, Bead.Status.REVIEW, Bead.Status.BLOCKED]


@dataclass
class Decision:
    kind: str  # lesson, review, blocked, failing
    text: str
    url: str
    note: str = ""  # what follows from deciding, said under the link


def next_decisions(workspace: Workspace) -> list[Decision]:
    lessons = lessons_waiting(workspace)
    # A bead a waiting lesson came from: approving the lesson is its decision,
    # unless a person blocked it (the approval leaves that to a person).
    taught = {bead_id for learning in lessons for bead_id in learning.lesson_beads()}
    taught -= set(
        Bead.objects.filter(pk__in=taught, status=Bead.Status.BLOCKED)
        .exclude(attempts__gte=MAX_ATTEMPTS)
        .values_list("pk", flat=True)
    )
    decisions = [lesson_decision(learning) for learning in lessons]
    decisions += review_decisions(workspace)
    blocked = Bead.objects.filter(repository__workspace=workspace, status=Bead.Status.BLOCKED)
    decisions += [
        Decision(
            "blocked",
            f"Unblock {b.id}: {failure_headline(b.last_failure) or b.title}",
            b.get_absolute_url(),
        )
        for b in blocked.exclude(pk__in=taught).order_by("priority", "updated_at")[:SHOWN]
    ]
    failed_check = GateResult.objects.filter(gate=GateResult.Gate.CHECK, passed=False)
    failing = Bead.objects.filter(
        repository__workspace=workspace,
        status=Bead.Status.OPEN,
        attempts__gt=0,
        submissions__gate_results__in=failed_check,
    ).distinct()
    decisions += [
        Decision("failing", f"Check fails on {b.id}: {b.title}", b.get_absolute_url())
        for b in failing.exclude(pk__in=taught).order_by("priority", "-updated_at")[:SHOWN]
    ]
    return decisions


def lessons_waiting(workspace: Workspace) -> list[Learning]:
    """Candidate lessons that a refusal or rejection of a bead still to land
    taught, oldest first. Asked from the beads' side: the beads that failed
    and are still to land are few, the candidates (imports among them) many."""
    tried = Bead.objects.filter(
        repository__workspace=workspace, status__in=TRYING, attempts__gt=0
    ).values("pk")
    candidates = Learning.objects.filter(
        workspace=workspace, status=Learning.Status.CANDIDATE, source_bead__in=tried
    )
    found = candidates.select_related("source_bead").order_by("created_at", "pk")[: SHOWN * 2]
    return [learning for learning in found if learning.lesson_of()][:SHOWN]


def lesson_decision(learning: Learning) -> Decision:
    bead = learning.source_bead
    assert bead is not None  # lessons_waiting() asks for those with one
    text = f"Approve the lesson learned from {bead.pk}'s {learning.lesson_of()}: {learning.title}"
    if bead.out_of_attempts():
        note = f"{bead.pk} is blocked after {bead.attempts} failed attempts: approved, "
        note += "the lesson goes into its context and it gets another try."
    else:
        note = f"Approved, the lesson goes into the context of {bead.pk}'s next try."
    return Decision("lesson", text, learning.get_absolute_url(), note)


def review_decisions(workspace: Workspace) -> list[Decision]:
    """One per repository: its one submission waiting, or how many wait, the
    link going to the oldest (whose page leads on to the next)."""
    waiting = Submission.objects.filter(
        repository__workspace=workspace, status=Submission.Status.AWAITING_REVIEW
    )
    counts = waiting.values_list("repository").annotate(n=Count("*")).order_by("repository")
    decisions = []
    for repo_id, n in list(counts)[:SHOWN]:
        oldest = waiting.filter(repository=repo_id).select_related("bead", "repository")
        sub = oldest.order_by("queued_at", "pk").first()
        if sub is None:  # decided since it was counted
            continue
        text = (
            f"Review {sub.bead_id}: {sub.bead.title}"
            if n == 1
            else f"Review {n} {sub.repository.name} submissions"
        )
        decisions.append(Decision("review", text, sub.get_absolute_url()))
    return decisions


def next_review(submission: Submission) -> tuple[Submission | None, int]:
    """The oldest other submission of its repository waiting for review, and how
    many others wait: a reviewer goes on from one to the next."""
    others = Submission.objects.filter(
        repository=submission.repository_id, status=Submission.Status.AWAITING_REVIEW
    ).exclude(pk=submission.pk)
    first = others.select_related("bead").order_by("queued_at", "pk").first()
    return first, (others.count() if first is not None else 0)


def failure_headline(text: str) -> str:
    """A failure in one line: its first line, and the line of the output that
    says most when that is another (a test's AssertionError under "check gate:
    Exit code 1.")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    first, said = lines[0], headline("\n".join(lines[1:]))
    line = f"{first} {said}" if said and said not in first else first
    return line if len(line) <= HEADLINE_CHARS else line[: HEADLINE_CHARS - 1] + "…"

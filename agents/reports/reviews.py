"""Review at team scale, read-only: a submission's risk, the queue of what waits
for people (filters, what waits for one person), and the review figures.

Risk is the highest of four levels, each with its reason: the size of the
change (lines, against the rules' [risk] thresholds), the paths (a rule's
`risk`), this agent's history on this repository (its share of refused
submissions among its last ones) and the bead's failed attempts.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import median
from typing import Any

from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from agents.models import Agent, Approval, Submission
from beads.models import Bead
from workspace.models import Repository
from workspace.reviewrules import LEVELS, Need, RiskSettings

METRIC_DAYS = 30  # /metrics' first-pass rate reads this many days
HISTORY = 20  # an agent's last finished submissions on a repository its risk reads
HISTORY_MIN = 4  # fewer than this say nothing yet
# Size buckets of the queue's filter: (name, label, fewer lines than).
SIZES = [
    ("xs", "under 10 lines", 10),
    ("s", "10–49 lines", 50),
    ("m", "50–249 lines", 250),
    ("l", "250–999 lines", 1000),
    ("xl", "1000 lines or more", None),
]
# What the figures count against approvals: a person sent it back, with line
# comments (changes requested) or with a reason (rejected).
CHANGES_REQUESTED: list[str] = [Submission.Status.CHANGES_REQUESTED, Submission.Status.REJECTED]


@dataclass
class Assessment:
    level: str = "low"
    why: list[str] = field(default_factory=list)

    def raise_to(self, level: str, why: str) -> None:
        if LEVELS.index(level) > LEVELS.index(self.level):
            self.level = level
        if level != "low":
            self.why.append(why)


def refusal_rates(repository: Repository, agents: Iterable[int]) -> dict[int, tuple[int, int]]:
    """{agent id: (refused, finished)} among each agent's last HISTORY finished
    submissions here, in one query for a train's agents; a conflict (the branch
    moved) and the lead's own failure are not the agent's."""
    judged = [Submission.Status.COMMITTED, Submission.Status.REJECTED]
    order = [F("finished_at").desc(nulls_last=True), F("pk").desc()]
    latest = Window(RowNumber(), partition_by=F("session__agent_id"), order_by=order)
    rows = (
        Submission.objects.filter(
            repository=repository, session__agent_id__in=list(agents), status__in=judged
        )
        .annotate(latest=latest)
        .filter(latest__lte=HISTORY)
        .values_list("session__agent_id", "status")
    )
    rates: dict[int, tuple[int, int]] = {}
    for agent, status in rows:
        refused, finished = rates.get(agent, (0, 0))
        rates[agent] = (refused + (status == Submission.Status.REJECTED), finished + 1)
    return rates


def assess(
    lines: int,
    need: Need,
    settings: RiskSettings,
    agent: Agent,
    history: tuple[int, int],
    bead: Bead,
) -> Assessment:
    """`history`: the agent's (refused, finished) here (refusal_rates)."""
    risk = Assessment()
    if lines >= settings.high_lines:
        risk.raise_to("high", f"{lines} lines changed (high from {settings.high_lines})")
    elif lines >= settings.medium_lines:
        risk.raise_to("medium", f"{lines} lines changed (medium from {settings.medium_lines})")
    for why in need.path_risk_why:
        risk.raise_to(need.path_risk, why)
    refused, finished = history
    if finished >= HISTORY_MIN and refused * 2 >= finished:
        risk.raise_to("high", f"{agent.name} had {refused} of its last {finished} refused here")
    elif finished >= HISTORY_MIN and refused * 4 >= finished:
        risk.raise_to("medium", f"{agent.name} had {refused} of its last {finished} refused here")
    if bead.attempts >= 2:
        risk.raise_to("high", f"{bead.pk} failed {bead.attempts} attempts before")
    elif bead.attempts == 1:
        risk.raise_to("medium", f"{bead.pk} failed once before")
    return risk


# The queue.


@dataclass
class Filters:
    repo: str = ""
    owner: str = ""  # the bead's filer (a username)
    label: str = ""
    size: str = ""
    risk: str = ""
    mine: bool = False  # only what asks for this person (or nobody in particular)

    @classmethod
    def read(cls, params: Any) -> "Filters":
        size = params.get("size", "")
        risk = params.get("risk", "")
        return cls(
            repo=params.get("repo", "").strip(),
            owner=params.get("owner", "").strip(),
            label=params.get("label", "").strip(),
            size=size if size in {s[0] for s in SIZES} else "",
            risk=risk if risk in LEVELS else "",
            mine=params.get("mine") == "1",
        )

    def query(self) -> dict[str, str]:
        found = {k: v for k, v in vars(self).items() if v and k != "mine"}
        return {**found, **({"mine": "1"} if self.mine else {})}


def waiting() -> QuerySet[Submission]:
    """Every submission awaiting a person, across repositories, oldest first."""
    rows = Submission.objects.filter(status=Submission.Status.AWAITING_REVIEW)
    related = rows.select_related("bead__filed_by", "session__agent", "repository")
    return related.prefetch_related("gate_results").order_by("queued_at", "pk")


def size_filter(size: str) -> Q:
    low = 0
    for name, _, below in SIZES:
        if name == size:
            return Q(lines__gte=low) & (Q(lines__lt=below) if below else Q())
        low = below or low
    return Q()


def queue(filters: Filters, person: Any) -> list[Submission]:
    rows = waiting()
    if filters.repo:
        rows = rows.filter(repository__slug=filters.repo)
    if filters.owner:
        rows = rows.filter(bead__filed_by__username=filters.owner)
    if filters.risk:
        rows = rows.filter(risk=filters.risk)
    rows = rows.filter(size_filter(filters.size))
    found = list(rows)
    if filters.label:  # labels are a JSON list: SQLite cannot look inside it
        found = [s for s in found if filters.label in (s.bead.labels or [])]
    if filters.mine:
        names = person_names(person)
        found = [s for s in found if asks(s.review_owners, names)]
    return found


def person_names(person: Any) -> set[str]:
    """A person's username and the names of their groups: what rules name as owners."""
    if not getattr(person, "is_authenticated", False):
        return set()
    return {person.get_username(), *person.groups.values_list("name", flat=True)}


def asks(owners: Iterable[str], names: set[str]) -> bool:
    """A submission asks this person: they (or a group of theirs) own it, or nobody does."""
    owners = list(owners or [])
    return not owners or bool(names.intersection(owners))


def waiting_for(person: Any) -> int:
    """How many submissions wait for this person: they may decide on them (not
    their own bead where another must review, not one they approved already)
    and they are among its owners or it names none. Three small queries."""
    names = person_names(person)
    if not names:
        return 0
    rows = Submission.objects.filter(status=Submission.Status.AWAITING_REVIEW)
    rows = rows.exclude(approval__person=person)
    own = Q(repository__review_by_other=True, bead__filed_by=person)
    return sum(
        1
        for owners in rows.exclude(own).values_list("review_owners", flat=True)
        if asks(owners, names)
    )


def filter_choices() -> dict[str, Any]:
    """What the filters offer: the repositories, filers and labels of what waits."""
    rows = Submission.objects.filter(status=Submission.Status.AWAITING_REVIEW)
    beads = rows.values_list("bead__filed_by__username", "bead__labels")
    owners = sorted({o for o, _ in beads if o})
    labels = sorted({label for _, ls in beads for label in (ls or []) if isinstance(label, str)})
    repos = Repository.objects.filter(active=True).values_list("slug", "name")
    return {
        "repos": list(repos),
        "owners": owners,
        "labels": labels,
        "sizes": SIZES,
        "risks": LEVELS,
    }


# The figures.


@dataclass
class Figures:
    days: int
    reviewed: int = 0
    first_review_median_s: float | None = None
    first_review_p90_s: float | None = None
    approvals: int = 0
    changes_requested: int = 0
    per_person: list[dict[str, Any]] = field(default_factory=list)
    per_agent: list[dict[str, Any]] = field(default_factory=list)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figures(days: int = 30, now: datetime | None = None) -> Figures:
    """The review figures of the last `days`: time to first review (median, p90),
    reviews per person per day, approvals against changes requested, each
    agent's first-pass approval rate. A fixed number of queries."""
    now = now or timezone.now()
    since = now - timedelta(days=days)
    out = Figures(days)
    first = Submission.objects.filter(first_review_at__gte=since, review_requested_at__isnull=False)
    waits = [
        (done - asked).total_seconds()
        for asked, done in first.values_list("review_requested_at", "first_review_at")
        if asked and done
    ]
    out.reviewed = len(waits)
    out.first_review_median_s = median(waits) if waits else None
    out.first_review_p90_s = percentile(waits, 0.9)
    approvals = list(Approval.objects.filter(at__gte=since).values_list("person__username", "at"))
    rejected = Submission.objects.filter(
        status__in=CHANGES_REQUESTED, reviewed_by__isnull=False, reviewed_at__gte=since
    )
    rejections = [
        (name, at)
        for name, at in rejected.values_list("reviewed_by__username", "reviewed_at")
        if at
    ]
    out.approvals, out.changes_requested = len(approvals), len(rejections)
    out.per_person = per_person(approvals, rejections, days)
    out.per_agent = first_pass(since)
    return out


def per_person(
    approvals: list[tuple[str, datetime]], rejections: list[tuple[str, datetime]], days: int
) -> list[dict[str, Any]]:
    counts: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"approved": 0, "rejected": 0, "days": set()}
    )
    for kind, rows in (("approved", approvals), ("rejected", rejections)):
        for name, at in rows:
            counts[name][kind] += 1
            counts[name]["days"].add(at.date())
    return [
        {
            "person": name,
            "approved": c["approved"],
            "rejected": c["rejected"],
            "reviews": c["approved"] + c["rejected"],
            "per_day": round((c["approved"] + c["rejected"]) / days, 2),
            "active_days": len(c["days"]),
        }
        for name, c in sorted(counts.items())
    ]


def first_pass(since: datetime) -> list[dict[str, Any]]:
    """Each agent's first-pass approval rate: of the beads a person first reviewed
    in the window, the share whose first reviewed submission was approved."""
    reviewed = Submission.objects.filter(first_review_at__isnull=False).order_by(
        "first_review_at", "pk"
    )
    firsts: dict[str, tuple[str, bool, datetime]] = {}
    approved = {Submission.Status.APPROVED, Submission.Status.COMMITTED}
    rows = reviewed.values_list(
        "bead_id", "session__agent__name", "status", "approvals", "first_review_at"
    )
    for bead, agent, status, _, at in rows:
        if at and bead not in firsts and status != Submission.Status.AWAITING_REVIEW:  # decided
            firsts[bead] = (agent, status in approved, at)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for agent, passed, at in firsts.values():
        if at >= since:
            counts[agent][0] += int(passed)
            counts[agent][1] += 1
    return [
        {"agent": agent, "first_pass": ok, "reviewed": n, "rate": round(ok / n, 3)}
        for agent, (ok, n) in sorted(counts.items())
    ]

"""The hook: the only place readiness is decided, and the only way work is claimed.

A bead is ready when it is open, not an epic (its children carry the work),
not pinned nor marked not work (bd's pinned, ephemeral and non-work beads),
not blocked (below), every bead of the earlier waves of its active plan has
closed, its wave is under the plan's agents per wave, and its repository is
active and under `max_agents`.
Order: wave number (unplanned beads after planned ones), priority, age.

Blocked, as bd has it: a bead with a `blocks` or `conditional-blocks`
dependency while both beads are active (not closed, not pinned), in any
repository; and, transitively, a `parent-child` child of a blocked bead.
"""

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from beads.models import Bead, Dependency, Plan, Wave, WaveBead
from workspace.models import Repository, Workspace

T = TypeVar("T")
Waves = dict[int, list[str]]  # {wave number: [bead ids]}

CLAIM_TRIES = 5
PICK_WINDOW = 8  # the hook's rows a claim looks at, beyond those it passed over
BY_PRIORITY = ("priority", "created_at", "id")
# Read with a claimed bead, in its row's query: the session opens in its
# repository, and the context pack ranks the learnings of its workspace.
CLAIMED_WITH = ("repository__workspace",)


class NothingReady(Exception):
    """No bead can be claimed now (409)."""


class NotClaimable(Exception):
    """The bead asked for exists but cannot be claimed now (409)."""


def repositories_with_room(workspace: Workspace | None = None) -> list[int]:
    """Ids of the active repositories with fewer beads in progress than max_agents."""
    repos = Repository.objects.filter(active=True)
    if workspace is not None:
        repos = repos.filter(workspace=workspace)
    busy = in_progress_counts()
    return [pk for pk, cap in repos.values_list("pk", "max_agents") if busy.get(pk, 0) < cap]


def in_progress_counts() -> dict[int, int]:
    """{repository id: beads in progress}, off the status index (COUNT(*): SQLite
    then reads the index alone, without the text primary key)."""
    rows = Bead.objects.filter(status=Bead.Status.IN_PROGRESS).values_list("repository")
    return dict(rows.annotate(n=Count("*")).values_list("repository", "n").order_by())


def open_waves() -> Waves:
    """{wave number: [bead ids]} of the beads that active plans let start now.

    A plan's current wave is its lowest wave with a bead not yet closed; its
    open beads may start while fewer than the plan's max_agents_per_wave of
    them are in progress. Active plans are few and small: this is read in
    Python so that the hook's main query stays a plain index scan.
    """
    rows = WaveBead.objects.filter(plan__status=Plan.Status.ACTIVE).values_list(
        "plan_id", "plan__max_agents_per_wave", "wave__number", "bead_id", "bead__status"
    )
    plans: defaultdict[tuple[int, int], list[tuple[int, str, str]]] = defaultdict(list)
    for plan_id, cap, number, bead_id, status in rows:
        plans[plan_id, cap].append((number, bead_id, status))
    allowed: defaultdict[int, list[str]] = defaultdict(list)
    for (_, cap), members in plans.items():
        pending = [m for m in members if m[2] != Bead.Status.CLOSED]
        if not pending:
            continue
        current = min(number for number, _, _ in pending)
        wave = [m for m in pending if m[0] == current]
        if sum(status == Bead.Status.IN_PROGRESS for _, _, status in wave) < cap:
            allowed[current] += [bead_id for _, bead_id, status in wave if status == "open"]
    return allowed


def eligible(
    repository: Repository | None = None,
    workspace: Workspace | None = None,
    repositories: list[int] | None = None,
) -> tuple[QuerySet[Bead], Waves]:
    """Open beads of repositories with room that are work (not epics, pinned or
    not work) and not blocked; and the open waves. `repositories` (ids)
    narrows it: dispatch leaves paused ones out."""
    beads = Bead.objects.filter(
        status=Bead.Status.OPEN,
        repository__in=repositories_with_room(workspace),
        pinned=False,
        not_work=False,
    ).exclude(issue_type=Bead.Type.EPIC)
    if repository is not None:
        beads = beads.filter(repository=repository)
    if repositories is not None:
        beads = beads.filter(repository__in=repositories)
    return unblocked(beads), open_waves()


# Blocked (see the module's docstring) is asked per candidate, never as the
# whole set of blocked beads: the ready pages read the open beads in hook
# order and stop at a page's end, and computing every blocked bead first
# (every active bead against every blocking dependency) cost more than the rest
# of the statement. Two parts:
#
# - directly blocked: an active blocker through a `blocks` or
#   `conditional-blocks` dependency, a probe of the dependency's (issue,
#   depends_on) index per candidate (the candidate itself is active: open and
#   not pinned);
# - under a blocked parent: the parent-child descendants of the parents that
#   are directly blocked, a recursive walk seeded only by parents (the
#   parent-child partial index), so its cost is that of the parent-child links.
#   UNION, not UNION ALL: a parent-child loop ends.
DIRECTLY_BLOCKED = """EXISTS (
    SELECT 1 FROM {dependency} d JOIN {bead} blocker ON blocker.id = d.depends_on_id
    WHERE d.issue_id = {alias}.id AND d.type IN ('blocks', 'conditional-blocks')
      AND blocker.status <> 'closed' AND NOT blocker.pinned
)"""
UNDER_BLOCKED_CTE = """
under_blocked(id) AS (
    SELECT parent.id FROM {bead} parent
    WHERE parent.id IN (SELECT depends_on_id FROM {dependency} WHERE type = 'parent-child')
      AND parent.status <> 'closed' AND NOT parent.pinned AND {parent_blocked}
    UNION
    SELECT d.issue_id FROM {dependency} d JOIN under_blocked ON d.depends_on_id = under_blocked.id
    WHERE d.type = 'parent-child'
)"""


def directly_blocked() -> Exists:
    """Whether the outer bead has an active blocker (DIRECTLY_BLOCKED, for querysets)."""
    blockers = Dependency.objects.filter(
        issue=OuterRef("pk"), type__in=Dependency.BLOCKING, depends_on__pinned=False
    )
    return Exists(blockers.exclude(depends_on__status=Bead.Status.CLOSED))


def unblocked(beads: QuerySet[Bead]) -> QuerySet[Bead]:
    """`beads` less the blocked ones; `beads` must all be active (open, not pinned).

    Two excludes, not one: each stays a top-level anti-join the database may
    run per row (a page) or hashed (a count)."""
    return beads.exclude(directly_blocked()).exclude(pk__in=RawSQL(UNDER_BLOCKED_IDS, []))


def wave_number(waves: Waves) -> Case:
    return Case(
        *(When(pk__in=ids, then=Value(n)) for n, ids in sorted(waves.items())),
        default=Value(None),
        output_field=IntegerField(),
    )


IN_A_PLAN = WaveBead.objects.filter(bead=OuterRef("pk"), plan__status=Plan.Status.ACTIVE)


def parts(
    repository: Repository | None = None,
    workspace: Workspace | None = None,
    repositories: list[int] | None = None,
) -> tuple[QuerySet[Bead] | None, QuerySet[Bead]]:
    """The ready beads as two ordered querysets: (planned by wave, the rest by priority).

    Kept apart, the large unplanned part is read in index order and stops at
    a page's end instead of being sorted whole. With no open wave, the planned
    part is None.
    """
    return split(*eligible(repository, workspace, repositories))


def split(beads: QuerySet[Bead], waves: Waves) -> tuple[QuerySet[Bead] | None, QuerySet[Bead]]:
    """parts() of eligible() beads and open waves."""
    unplanned = beads.exclude(Exists(IN_A_PLAN)).order_by(*BY_PRIORITY)
    if not waves:
        return None, unplanned
    wave_ids = [bead_id for ids in waves.values() for bead_id in ids]
    planned = beads.filter(pk__in=wave_ids).annotate(wave_number=wave_number(waves))
    return planned.order_by("wave_number", *BY_PRIORITY), unplanned


def first_ready(limit: int, fields: Sequence[str] | None = None, **filters: Any) -> list[Bead]:
    """The first `limit` ready beads in hook order, as a list (only `fields`, if given)."""
    first: list[Bead] = []
    for part in parts(**filters):
        if part is None or len(first) >= limit:
            continue
        part = part.select_related("repository")
        if fields:
            part = part.only(*fields)
        first += list(part[: limit - len(first)])
    return first


def ready(
    repository: Repository | None = None,
    workspace: Workspace | None = None,
    repositories: list[int] | None = None,
) -> QuerySet[Bead]:
    """All ready beads in hook order, as one queryset (for counts and whole pages)."""
    return ready_in(*eligible(repository, workspace, repositories))


def ready_in(beads: QuerySet[Bead], waves: Waves) -> QuerySet[Bead]:
    """ready() of eligible() beads and open waves."""
    if not waves:
        return beads.exclude(Exists(IN_A_PLAN)).order_by(*BY_PRIORITY)
    wave_ids = [bead_id for ids in waves.values() for bead_id in ids]
    beads = beads.filter(Q(pk__in=wave_ids) | ~Exists(IN_A_PLAN))
    return beads.annotate(wave_number=wave_number(waves)).order_by(
        F("wave_number").asc(nulls_last=True), *BY_PRIORITY
    )


def claim(
    assignee: str,
    open_session: Callable[[Bead], T],
    repository: Repository | None = None,
    bead: Bead | None = None,
    repositories: list[int] | None = None,
) -> T:
    """Atomically turn one ready bead into in_progress; return `open_session(bead)`,
    which runs in the same transaction (the caller's record of the claim).

    On PostgreSQL the candidate row is taken with FOR UPDATE SKIP LOCKED, so
    concurrent claimers pass over each other's beads; on SQLite the whole
    claim runs in one IMMEDIATE transaction, which serializes writers. Either
    way the status change is a conditional UPDATE, retried on a lost race.
    """
    passed_over: set[str] = set()
    for _ in range(CLAIM_TRIES):
        with transaction.atomic():
            candidate = pick(repository, bead, passed_over, repositories)
            if candidate is None:
                break
            passed_over.add(candidate.pk)  # if this try does not end the claim
            if not candidate.start(assignee):
                continue
            claimed = open_session(candidate)
            # Checked last: the repository's row lock, which every claimer of the
            # repository waits for, is then held only from here to the commit.
            if room_left(candidate.repository_id):
                return claimed
            transaction.set_rollback(True)  # over max_agents: undo the start and the session
    if bead is not None:
        raise NotClaimable(why_not_ready(bead))
    raise NothingReady("nothing is ready" + (f" in {repository.slug}" if repository else ""))


def pick(
    repository: Repository | None,
    bead: Bead | None,
    passed_over: set[str],
    repositories: list[int] | None = None,
) -> Bead | None:
    """The first ready bead not passed over, planned ones first, row-locked where
    the database can skip rows other claimers hold."""
    if bead is None and (found := first_in_window(repository, passed_over, repositories)):
        return found
    for candidates in parts(repository, repositories=repositories):
        if candidates is None:
            continue
        candidates = candidates.exclude(pk__in=passed_over)
        if bead is not None:
            candidates = candidates.filter(pk=bead.pk)
        if connection.features.has_select_for_update_skip_locked:
            candidates = candidates.select_for_update(skip_locked=True, of=("self",))
        if found := candidates.select_related(*CLAIMED_WITH).first():
            return found
    return None


def first_in_window(
    repository: Repository | None, passed_over: set[str], repositories: list[int] | None
) -> Bead | None:
    """The first ready bead that is not passed over nor row-locked by another
    claimer among the hook's first rows (the one statement of ready_rows, not
    the querysets: most of a claim's time); None if there is none there, and
    pick() looks with the querysets."""
    rows = ready_rows(
        len(passed_over) + PICK_WINDOW, repository=repository, repositories=repositories
    )
    for bead_id in [row["id"] for row in rows if row["id"] not in passed_over]:
        # Still open: the rows were read before this statement, and a claimer that
        # has since committed holds no lock any more to skip it by.
        candidate = Bead.objects.filter(pk=bead_id, status=Bead.Status.OPEN)
        candidate = candidate.select_related(*CLAIMED_WITH)
        if connection.features.has_select_for_update_skip_locked:
            candidate = candidate.select_for_update(skip_locked=True, of=("self",))
        if found := candidate.first():
            return found
    return None


def room_left(repository_id: int) -> bool:
    """Re-check max_agents with the repository row locked, once this transaction
    has started its bead (counted here): two claimers of one full repository
    must not both get in. The second waits for the first's commit, and its
    count (a new snapshot, per statement) sees the first's bead."""
    locked = Repository.objects.select_for_update().filter(pk=repository_id)
    max_agents = locked.values_list("max_agents", flat=True).get()
    busy = Bead.objects.filter(repository=repository_id, status=Bead.Status.IN_PROGRESS).count()
    return busy <= max_agents


def why_not_ready(bead: Bead) -> str:
    bead.refresh_from_db()
    if bead.status != Bead.Status.OPEN:
        return f"bead {bead.id} is {bead.get_status_display()}"
    blockers = [b.id for b in bead.blockers().exclude(status=Bead.Status.CLOSED)]
    if blockers:
        return f"bead {bead.id} waits for {', '.join(blockers)}"
    if bead.issue_type == Bead.Type.EPIC:
        return f"bead {bead.id} is an epic: claim its children"
    if bead.pinned or bead.not_work:
        return f"bead {bead.id} is not work for an agent (pinned, ephemeral or a bd non-work type)"
    if is_blocked(bead):
        return f"bead {bead.id} is blocked, or a child of a blocked bead"
    if not bead.repository.active:
        return f"repository {bead.repository.slug} is not active"
    if bead.repository_id not in repositories_with_room():
        repo = bead.repository
        return f"repository {repo.slug} has {repo.max_agents} agent(s) at work, its most"
    member = WaveBead.objects.filter(bead=bead, plan__status=Plan.Status.ACTIVE)
    if (placed := member.select_related("wave", "plan").first()) is not None:
        return (
            f"bead {bead.id} is in wave {placed.wave.number} of plan {placed.plan.name!r}: "
            f"an earlier wave has not landed, or {placed.plan.max_agents_per_wave} "
            "agent(s) already work on its wave"
        )
    return f"bead {bead.id} is not ready (an earlier wave, or no free agent slot)"


def is_blocked(bead: Bead) -> bool:
    """Whether the bead is blocked, directly or under a blocked parent (the module's docstring)."""
    active = ~Q(status=Bead.Status.CLOSED) & Q(pinned=False)
    blocked = (directly_blocked() & active) | Q(pk__in=RawSQL(UNDER_BLOCKED_IDS, []))
    return Bead.objects.filter(blocked, pk=bead.pk).exists()


def readiness(bead: Bead) -> tuple[bool, str]:
    """Whether the hook would hand out this bead now, and why (the hook's own words)."""
    if ready(repository=bead.repository).filter(pk=bead.pk).exists():
        return True, f"bead {bead.id} is ready: the next agent to ask may claim it"
    return False, why_not_ready(bead)


def first_ready_per_repository(workspace: Workspace, n: int) -> list[Bead]:
    """The first n ready beads of each repository, in hook order.

    Each carries `ready_count`, how many of its repository's beads are ready.
    Four queries after eligible()'s, whatever the numbers of beads and
    repositories: the ready beads counted per repository in the database, the
    planned ones (the open waves: few) read whole, the first n unplanned ones
    of each repository with some ready (heads()), the shown beads' columns.
    No query sorts every ready bead or brings it into Python.
    """
    beads, waves = eligible(workspace=workspace)
    counts = dict(
        ready_in(beads, waves)
        .values_list("repository_id")
        .annotate(n=Count("*"))
        .values_list("repository_id", "n")
        .order_by()
    )
    first: defaultdict[int, list[str]] = defaultdict(list)
    planned, unplanned = split(beads, waves)
    if planned is not None:
        for pk, repo_id in planned.values_list("pk", "repository_id"):
            first[repo_id].append(pk)
    for repo_id, pk in heads(unplanned, list(counts), n):
        first[repo_id].append(pk)  # after the planned ones, as the hook has them
    place = {pk: i for i, pk in enumerate(pk for ids in first.values() for pk in ids[:n])}
    rows = Bead.objects.filter(pk__in=list(place)).only(
        "id", "repository", "priority", "title", "scope"
    )
    shown = sorted(rows.order_by(), key=lambda b: place[b.pk])
    for bead in shown:
        bead.ready_count = counts[bead.repository_id]  # type: ignore[attr-defined]  # for the page
    return shown


# The first beads of each repository, in one statement planned once: a LATERAL
# join on PostgreSQL (a UNION ALL of a branch per repository costs each
# branch's planning, ~1 ms); SQLite, without LATERAL, plans such a UNION ALL in
# no time. Either way each repository's part reads the (repository, status,
# priority, created_at, id) index in order and stops at its LIMIT.
HEADS_LATERAL = """
SELECT h.repository_id, h.id FROM unnest(%s::bigint[]) AS r(id) CROSS JOIN LATERAL (
    SELECT * FROM ({rows}) AS u WHERE u.repository_id = r.id ORDER BY {order} LIMIT %s
) AS h ORDER BY h.repository_id, {outer_order}
"""
HEADS_BRANCH = """SELECT * FROM (
    SELECT * FROM ({rows}) AS u WHERE u.repository_id = %s ORDER BY {order} LIMIT %s
) AS h"""


def heads(beads: QuerySet[Bead], repository_ids: Sequence[int], n: int) -> list[tuple[int, str]]:
    """(repository id, bead id) of the first n of `beads` in BY_PRIORITY order
    in each of these repositories, by repository then in that order."""
    if not repository_ids:
        return []
    keys = beads.values_list("repository_id", *BY_PRIORITY).order_by()
    rows, params = keys.query.sql_with_params()
    order = ", ".join(BY_PRIORITY)
    if connection.vendor == "postgresql":
        outer_order = ", ".join(f"h.{column}" for column in BY_PRIORITY)
        sql = HEADS_LATERAL.format(rows=rows, order=order, outer_order=outer_order)
        args = [list(repository_ids), *params, n]
    else:
        branch = HEADS_BRANCH.format(rows=rows, order=order)
        union = " UNION ALL ".join(f"{branch}{k}" for k in range(len(repository_ids)))
        sql = f"SELECT repository_id, id FROM ({union}) AS heads ORDER BY repository_id, {order}"
        args = [arg for pk in repository_ids for arg in (*params, pk, n)]
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return cursor.fetchall()


# The first page of ready work as one statement, fetched as values: what the
# agents' API serves on every `ready`. The same rules as eligible(),
# open_waves() and parts() above, which the tests hold it to on random
# graphs: the planned part in wave order, then the unplanned part in index
# order, each stopping at the page's end, and only those rows sorted. The
# planned part starts from the few beads of the open waves (CROSS JOIN: SQLite
# then keeps that order, instead of testing every open bead's blockers).
READY_SQL = """
WITH RECURSIVE busy AS (
    SELECT repository_id, COUNT(*) AS n FROM {bead}
    WHERE status = 'in_progress' GROUP BY repository_id
), room AS (
    SELECT r.id, r.slug FROM {repository} r LEFT JOIN busy ON busy.repository_id = r.id
    WHERE r.active AND COALESCE(busy.n, 0) < r.max_agents {repository_filter}
), member AS (
    SELECT wb.bead_id, wb.plan_id, w.number, m.status, p.max_agents_per_wave AS cap
    FROM {wavebead} wb
    JOIN {plan} p ON p.id = wb.plan_id AND p.status = 'active'
    JOIN {wave} w ON w.id = wb.wave_id
    JOIN {bead} m ON m.id = wb.bead_id
), wave AS (
    SELECT plan_id, MIN(number) AS number FROM member WHERE status <> 'closed' GROUP BY plan_id
), open_wave AS (
    SELECT member.bead_id, member.number FROM member
    JOIN wave ON wave.plan_id = member.plan_id AND wave.number = member.number
    WHERE member.status = 'open' AND (
        SELECT COUNT(*) FROM member AS held WHERE held.plan_id = member.plan_id
        AND held.number = member.number AND held.status = 'in_progress'
    ) < member.cap
), {under_blocked}, ready AS NOT MATERIALIZED (
    SELECT b.id, room.slug AS repo, b.title, b.status, b.priority, b.issue_type, b.labels,
           b.scope, b.assignee, b.attempts, b.created_at
    FROM {bead} b JOIN room ON room.id = b.repository_id
    WHERE b.status = 'open' AND b.issue_type <> 'epic' AND NOT b.pinned AND NOT b.not_work
      {bead_filter} AND NOT {b_blocked} AND b.id NOT IN (SELECT id FROM under_blocked)
)
SELECT * FROM (
    SELECT 0 AS part, open_wave.number AS wave, ready.* FROM open_wave
    CROSS JOIN ready WHERE ready.id = open_wave.bead_id
    ORDER BY open_wave.number, ready.priority, ready.created_at, ready.id LIMIT %s
) planned
UNION ALL
SELECT * FROM (
    SELECT 1 AS part, CAST(NULL AS integer) AS wave, ready.* FROM ready
    WHERE NOT EXISTS (SELECT 1 FROM member WHERE member.bead_id = ready.id)
    ORDER BY ready.priority, ready.created_at, ready.id LIMIT %s
) unplanned
ORDER BY part, wave, priority, created_at, id
LIMIT %s
"""
TABLES = {
    "bead": Bead._meta.db_table,
    "repository": Repository._meta.db_table,
    "wavebead": WaveBead._meta.db_table,
    "plan": Plan._meta.db_table,
    "wave": Wave._meta.db_table,
    "dependency": Dependency._meta.db_table,
}
UNDER_BLOCKED = UNDER_BLOCKED_CTE.format(
    parent_blocked=DIRECTLY_BLOCKED.format(alias="parent", **TABLES), **TABLES
)
UNDER_BLOCKED_IDS = f"WITH RECURSIVE {UNDER_BLOCKED} SELECT id FROM under_blocked"
B_BLOCKED = DIRECTLY_BLOCKED.format(alias="b", **TABLES)  # READY_SQL's candidate
READY_FIELDS = (
    "id repo title status priority issue_type labels scope assignee attempts created_at"
).split()


def ready_rows(
    limit: int,
    repository: Repository | None = None,
    workspace: Workspace | None = None,
    repositories: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """The first `limit` ready beads in hook order, as dicts of READY_FIELDS
    (`repo` is the repository's slug): one round trip, no model instances."""
    clauses, params = [], []
    if workspace is not None:
        clauses.append("AND r.workspace_id = %s")
        params.append(workspace.pk)
    if repository is not None:
        clauses.append("AND r.id = %s")
        params.append(repository.pk)
    if repositories is not None:
        if not repositories:
            return []
        clauses.append(f"AND r.id IN ({', '.join(['%s'] * len(repositories))})")
        params += list(repositories)
    # One repository: said of the beads too, so that SQLite walks that
    # repository's part of the order index, not every open bead's.
    bead_filter = "" if repository is None else "AND b.repository_id = %s"
    sql = READY_SQL.format(
        repository_filter=" ".join(clauses),
        bead_filter=bead_filter,
        under_blocked=UNDER_BLOCKED,
        b_blocked=B_BLOCKED,
        **TABLES,
    )
    with connection.cursor() as cursor:
        bead_params = [] if repository is None else [repository.pk]
        cursor.execute(sql, [*params, *bead_params, limit, limit, limit])
        rows = cursor.fetchall()
    return [as_bead_values(row[2:]) for row in rows]


def as_bead_values(row: Sequence[Any]) -> dict[str, Any]:
    """A row of READY_FIELDS as Python values, whatever the database returned."""
    values = dict(zip(READY_FIELDS, row, strict=True))
    for key in ("labels", "scope"):
        if isinstance(values[key], str):  # SQLite keeps JSON as text
            values[key] = json.loads(values[key])
    values["created_at"] = aware(values["created_at"])
    return values


def aware(value: datetime | str) -> datetime:
    """SQLite hands back naive UTC datetimes (or text): make them what the ORM gives."""
    parsed = parse_datetime(value) if isinstance(value, str) else value
    if parsed is None:
        raise ValueError(f"not a datetime: {value!r}")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)

"""The hook: the only place readiness is decided, and the only way work is claimed.

A bead is ready when it is open, not an epic (its children carry the work),
not pinned nor marked not work (bd's pinned, ephemeral and non-work beads),
not waiting out a back-off after repeated refusals (its `not_before` is past),
not blocked (below), every bead of the earlier waves of its active plan has
closed, its wave is under the plan's agents per wave, and its repository is
active, under `max_agents` and not held back by a layer above (HOLDS: review
back-pressure).
Order: wave number (unplanned beads after planned ones), priority, age.

Blocked, as bd has it: a bead with a `blocks` or `conditional-blocks`
dependency while both beads are active (not closed, not pinned), in any
repository; and, transitively, a `parent-child` child of a blocked bead.
"""

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
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
from workspace import gitops
from workspace.models import Repository, Workspace

Waves = dict[int, list[str]]  # {wave number: [bead ids]}

CLAIM_TRIES = 5
PICK_WINDOW = 8  # the hook's rows a claim looks at, beyond those it passed over
BY_PRIORITY = ("priority", "created_at", "id")


class NothingReady(Exception):
    """No bead can be claimed now (409)."""


class NotClaimable(Exception):
    """The bead asked for exists but cannot be claimed now (409)."""


@dataclass(frozen=True)
class Hold:
    """A reason a layer above holds a repository's new work back (agents: too many
    of its submissions await a person). `sql()`: a condition true of a repository
    row `r` that may take new work, added to every statement of the hook;
    `held(repositories)`: {id: why} of those it holds back now. The hook so stays
    the one place readiness is decided, without importing what it counts."""

    name: str
    sql: Callable[[], str]
    held: Callable[[Sequence[Repository]], dict[int, str]]


HOLDS: dict[str, Hold] = {}


def hold_back(hold: Hold) -> None:
    """Register a hold (at start-up, from an AppConfig.ready)."""
    HOLDS[hold.name] = hold


def held_back_sql() -> str:
    return " ".join(f"AND {hold.sql()}" for hold in HOLDS.values())


def held_back(repository: Repository) -> str:
    """Why the holds keep this repository's beads from the hook now, or ""."""
    return held_repositories([repository]).get(repository.pk, "")


def held_repositories(repositories: Sequence[Repository]) -> dict[int, str]:
    """{repository id: why} of those the holds keep from the hook now."""
    held: dict[int, str] = {}
    for hold in HOLDS.values():
        for pk, why in hold.held(repositories).items():
            held.setdefault(pk, why)
    return held


def repositories_with_room(workspace: Workspace | None = None) -> list[int]:
    """Ids of the active repositories with fewer beads in progress than max_agents,
    and not held back (HOLDS)."""
    repos = Repository.objects.filter(active=True)
    if HOLDS:
        table = TABLES["repository"]
        held = f"SELECT r.id FROM {table} r WHERE 1 = 1 {held_back_sql()}"
        repos = repos.filter(pk__in=RawSQL(held, []))
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
    beads = beads.filter(Q(not_before=None) | Q(not_before__lte=timezone.now()))
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


@dataclass(frozen=True)
class Opening:
    """The row a claim inserts beside the bead it moves (agents: the session), in
    the claim's own statement: its table and its columns' values, ready for the
    database. `bead_column` and `sha_column` take the claimed bead's id and its
    branch head, and the `stamped` columns the claim's time (not the time the
    row was built: a claim may wait on git and the lock after that, and a
    session must not seem to start before its bead was ready); the hook
    knows nothing else of it."""

    table: str
    values: dict[str, Any]  # column: value (as Field.get_db_prep_save gives it)
    types: dict[str, str]  # column: its database type (PostgreSQL casts the parameters)
    pk_column: str
    bead_column: str
    sha_column: str
    stamped: tuple[str, ...] = ()

    def at(self, now: Any) -> dict[str, Any]:
        """The row's values with the `stamped` columns set to `now`."""
        return {**self.values, **dict.fromkeys(self.stamped, now)}


@dataclass(frozen=True)
class Claimed:
    """A claim's result: the bead as it now is (in progress), its branch head
    and the claim's time (the opening's `stamped` columns)."""

    bead: Bead
    base_sha: str
    at: datetime


# A claim is one statement per database. PostgreSQL: the hook's first rows
# (READY_CTES, in hook order), the first of them still open and not
# row-locked by another claimer taken FOR UPDATE SKIP LOCKED, moved to
# in_progress, the opening row (the session) inserted, and the repository's row
# locked, all in one statement planned once per connection. Its snapshot cannot
# see a claim another transaction commits while this one waits for the
# repository's row, so max_agents is counted once more after it (a new snapshot,
# with that lock held: every claimer of the repository waits for it only from
# there to the commit). SQLite: the whole claim runs under BEGIN IMMEDIATE (one
# writer at a time), so one UPDATE … RETURNING of the first ready bead is exact,
# max_agents and all; the session's INSERT follows it.
CLAIM_PG = """{ctes},
hook_order AS ({parts}
    {order} LIMIT %s
), picked AS (
    SELECT b.id, h.part FROM {bead} b JOIN hook_order h ON h.id = b.id
    WHERE b.status = 'open' AND NOT (b.id = ANY(%s))
    ORDER BY h.part, h.wave, h.priority, h.created_at, h.id
    LIMIT 1 FOR UPDATE OF b SKIP LOCKED
), moved AS (
    UPDATE {bead} AS m SET status = 'in_progress', assignee = %s, not_before = NULL,
        updated_at = %s
    FROM picked WHERE m.id = picked.id AND m.status = 'open'
    RETURNING {returning}
), opened AS (
    INSERT INTO {opening} ({columns}) SELECT {values} FROM moved RETURNING 1
), repo AS (
    SELECT r.id, r.max_agents FROM {repository} r JOIN moved ON r.id = moved.repository_id
    FOR UPDATE OF r
)
SELECT moved.*, repo.max_agents, (SELECT part FROM picked), (SELECT COUNT(*) FROM opened)
FROM moved JOIN repo ON repo.id = moved.repository_id
"""
# A planned bead (part 0) claimed on PostgreSQL: its plan's row locked, then its
# wave's beads in progress counted with a new snapshot, as max_agents is.
WAVE_CAP_SQL = """
SELECT p.max_agents_per_wave FROM {plan} p JOIN {wavebead} wb ON wb.plan_id = p.id
WHERE wb.bead_id = %s AND p.status = 'active' FOR UPDATE OF p
"""
WAVE_BUSY_SQL = """
SELECT COUNT(*) FROM {wavebead} wb JOIN {bead} b ON b.id = wb.bead_id
WHERE wb.wave_id = (
    SELECT mine.wave_id FROM {wavebead} mine JOIN {plan} p ON p.id = mine.plan_id
    WHERE mine.bead_id = %s AND p.status = 'active'
) AND b.status = 'in_progress'
"""
CLAIM_SQLITE = """{ctes}
UPDATE {bead} SET status = 'in_progress', assignee = %s, not_before = NULL, updated_at = %s
WHERE id = (
    SELECT id FROM ({parts}) AS h WHERE h.id NOT IN (SELECT value FROM json_each(%s))
    {order} LIMIT 1
) AND status = 'open'
RETURNING {returning}
"""
IN_PROGRESS_SQL = (
    f"SELECT COUNT(*) FROM {Bead._meta.db_table} WHERE repository_id = %s "
    "AND status = 'in_progress'"
)


def composed(template: str) -> str:
    """A claim's statement with the hook's parts in it, its filters still to fill."""
    return (
        template.replace("{ctes}", READY_CTES)
        .replace("{parts}", READY_PARTS)
        .replace("{order}", HOOK_ORDER)
    )


def bead_fields() -> list[Any]:
    """The bead's columns, in the order a claim returns them."""
    return list(Bead._meta.concrete_fields)


def claim(
    assignee: str,
    opening: Opening,
    repository: Repository | None = None,
    bead: Bead | None = None,
    repositories: list[int] | None = None,
) -> Claimed:
    """Atomically turn one ready bead into in_progress and insert `opening`
    beside it (the caller's record of the claim), in one transaction.

    N claimers at once get N different beads or NothingReady, never one bead
    twice: the status change is a conditional UPDATE (`status = 'open'`) in
    the statement that picks the bead. PostgreSQL passes over the beads other
    claimers hold (SKIP LOCKED), looking further down the hook when the first
    rows are all held.
    """
    found = filters(repository, None, repositories, bead.pk if bead is not None else None)
    passed_over: list[str] = []
    window = PICK_WINDOW
    if found is not None:
        # The branch head, read before the statement: a claim of a known repository's
        # bead carries it in; another's is read once the repository is known.
        sha = head_before(bead.repository if bead is not None else repository)
        for _ in range(CLAIM_TRIES):
            with transaction.atomic():
                claimed = claim_once(assignee, opening, found, passed_over, window, sha)
                if claimed is not None:
                    return claimed
            if not connection.features.has_select_for_update_skip_locked:
                break  # SQLite's statement sees every bead: none was ready
            if not ready_rows(1, repository=repository, repositories=repositories):
                break
            window *= 4  # the first rows were all held by other claimers
    if bead is not None:
        raise NotClaimable(why_not_ready(bead))
    raise NothingReady(nothing_ready(repository))


def head_before(repository: Repository | None) -> str | None:
    """The branch head of the repository a claim is into, if known and readable
    (otherwise it is read once the bead is claimed, and its failure then said)."""
    if repository is None:
        return None
    try:
        return gitops.head_sha(repository.canonical_path, repository.branch)
    except gitops.GitError:
        return None


def claim_once(
    assignee: str,
    opening: Opening,
    found: "Filters",
    passed_over: list[str],
    window: int,
    sha: str | None,
) -> Claimed | None:
    """One try, inside the caller's transaction: the claimed bead, or None (the
    transaction is then rolled back when it changed anything)."""
    columns = [c for c in opening.values if c not in (opening.bead_column, opening.sha_column)]
    fields = bead_fields()
    returning = ", ".join(f.column for f in fields)
    at = timezone.now()
    now = connection.ops.adapt_datetimefield_value(at)
    row_values = opening.at(now)
    if connection.vendor == "postgresql":
        values = [f"CAST(%s AS {opening.types[c]})" for c in columns]
        sql = with_filters(
            composed(CLAIM_PG),
            found,
            returning=", ".join(f"m.{f.column}" for f in fields),
            opening=opening.table,
            columns=", ".join([*columns, opening.bead_column, opening.sha_column]),
            values=", ".join([*values, "moved.id", "CAST(%s AS text)"]),
        )
        limit = window + len(passed_over)
        params = [*found.room_params, now_param(), *found.bead_params, limit, limit, limit]
        params += [passed_over, assignee, now, *(row_values[c] for c in columns), sha or ""]
        row = fetch(sql, params, one=True)
        if row is None:
            return None
        claimed = bead_of(row[: len(fields)])
        max_agents, part = row[len(fields)], row[len(fields) + 1]
        over = fetch(IN_PROGRESS_SQL, [claimed.repository_id], one=True)[0] > max_agents
        if not over and part == 0:
            over = over_wave_cap(claimed.pk)
        if over:
            passed_over.append(claimed.pk)
            transaction.set_rollback(True)  # over max_agents or the wave's: undo it all
            return None
    else:
        sql = with_filters(composed(CLAIM_SQLITE), found, returning=returning)
        limit = 1 + len(passed_over)
        params = [*found.room_params, now_param(), *found.bead_params, assignee, now]
        params += [limit, limit, json.dumps(passed_over)]
        row = fetch(sql, params, one=True)
        if row is None:
            return None
        claimed = bead_of(row)
        placeholders = ", ".join(["%s"] * (len(columns) + 2))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {opening.table} "
                f"({', '.join([*columns, opening.bead_column, opening.sha_column])}) "
                f"VALUES ({placeholders})",
                [*(row_values[c] for c in columns), claimed.pk, sha or ""],
            )
    if sha is None:
        sha = base_of(claimed, opening)
    return Claimed(claimed, sha, at)


def over_wave_cap(bead_id: str) -> bool:
    """Whether a planned bead just claimed (PostgreSQL) puts its wave over its
    plan's agents per wave, counted with the plan's row locked."""
    cap = fetch(WAVE_CAP_SQL.format(**TABLES), [bead_id], one=True)
    if cap is None:
        return False
    return fetch(WAVE_BUSY_SQL.format(**TABLES), [bead_id], one=True)[0] > cap[0]


def base_of(claimed: Bead, opening: Opening) -> str:
    """The branch head of a bead claimed from any repository, written into its
    opening row (the repository was not known before the statement)."""
    repo = claimed.repository
    sha = gitops.head_sha(repo.canonical_path, repo.branch)
    pk = opening.values[opening.pk_column]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {opening.table} SET {opening.sha_column} = %s WHERE {opening.pk_column} = %s",
            [sha, pk],
        )
    return sha


def bead_of(row: Sequence[Any]) -> Bead:
    """A Bead from its columns as the database returned them (through the
    fields' converters, as the ORM reads a row)."""
    values, fields = [], bead_fields()
    for field, value in zip(fields, row, strict=True):
        column = field.get_col(Bead._meta.db_table)
        for convert in connection.ops.get_db_converters(column) + column.get_db_converters(
            connection
        ):
            value = convert(value, column, connection)
        values.append(value)
    return Bead.from_db(connection.alias, [f.attname for f in fields], values)


def nothing_ready(repository: Repository | None) -> str:
    if repository is None:
        return "nothing is ready"
    if why := held_back(repository):
        return f"nothing is ready in {repository.slug}: {why}"
    return f"nothing is ready in {repository.slug}"


SOONER = "sooner if someone comments on it, edits it, approves a learning, or a dependency lands"


def why_not_ready(bead: Bead) -> str:
    bead.refresh_from_db()
    if bead.status != Bead.Status.OPEN:
        return f"bead {bead.id} is {bead.get_status_display()}"
    if waiting := bead.waiting():
        return f"bead {bead.id} was {waiting} ({SOONER})"
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
    if why := held_back(bead.repository):
        return f"repository {bead.repository.slug} is {why}"
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


def waiting(
    repository: Repository | None = None,
    workspace: Workspace | None = None,
    repositories: Sequence[int] | None = None,
) -> QuerySet[Bead]:
    """The open beads held back by a back-off now, the soonest free first (off
    the partial index of beads with a `not_before`: only those are read)."""
    beads = Bead.objects.filter(not_before__gt=timezone.now(), status=Bead.Status.OPEN)
    if repository is not None:
        beads = beads.filter(repository=repository)
    if workspace is not None:
        beads = beads.filter(repository__workspace=workspace)
    if repositories is not None:
        beads = beads.filter(repository__in=repositories)
    return beads.order_by("not_before", "id")


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
# priority, created_at, id) index in order and stops at its LIMIT. The beads
# under a blocked parent are walked once, in the statement's own CTE, not once
# per repository's part.
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
    rows = rows.replace(UNDER_BLOCKED_IDS, "SELECT id FROM under_blocked")  # unblocked()'s
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
    sql = f"{HEADS_UNDER_BLOCKED} {sql}"
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
READY_CTES = """
WITH RECURSIVE busy AS (
    SELECT repository_id, COUNT(*) AS n FROM {bead}
    WHERE status = 'in_progress' GROUP BY repository_id
), room AS (
    SELECT r.id, r.slug FROM {repository} r LEFT JOIN busy ON busy.repository_id = r.id
    WHERE r.active AND COALESCE(busy.n, 0) < r.max_agents {held_back} {repository_filter}
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
      AND (b.not_before IS NULL OR b.not_before <= %s)
      {bead_filter} AND NOT {b_blocked} AND b.id NOT IN (SELECT id FROM under_blocked)
)"""
READY_PARTS = """
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
) unplanned"""
HOOK_ORDER = "ORDER BY part, wave, priority, created_at, id"
READY_SQL = f"{READY_CTES}{READY_PARTS}\n{HOOK_ORDER}\nLIMIT %s\n"
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
# heads(): the same, walked once for the whole statement.
HEADS_UNDER_BLOCKED = f"WITH RECURSIVE {UNDER_BLOCKED.replace(' AS (', ' AS MATERIALIZED (', 1)}"
B_BLOCKED = DIRECTLY_BLOCKED.format(alias="b", **TABLES)  # READY_SQL's candidate
READY_FIELDS = (
    "id repo title status priority issue_type labels scope assignee attempts created_at"
).split()


@dataclass(frozen=True)
class Filters:
    """What narrows the hook's statements: SQL added to its `room` (repositories,
    alias r) and `ready` (beads, alias b) parts, and their parameters in order."""

    room: str
    room_params: list[Any]
    bead: str
    bead_params: list[Any]


def filters(
    repository: Repository | None = None,
    workspace: Workspace | None = None,
    repositories: Sequence[int] | None = None,
    bead_id: str | None = None,
    holds: bool = True,
) -> Filters | None:
    """The statements' filters; None when they cannot match (no repositories).
    `holds=False` leaves HOLDS out (what they hold back, for saying why)."""
    clauses: list[str] = [held_back_sql() if holds else ""]
    params: list[Any] = []
    if workspace is not None:
        clauses.append("AND r.workspace_id = %s")
        params.append(workspace.pk)
    if repository is not None:
        clauses.append("AND r.id = %s")
        params.append(repository.pk)
    if repositories is not None:
        if not repositories:
            return None
        if connection.vendor == "postgresql":  # one statement text whatever the count
            clauses.append("AND r.id = ANY(%s)")
            params.append(list(repositories))
        else:
            clauses.append(f"AND r.id IN ({', '.join(['%s'] * len(repositories))})")
            params += list(repositories)
    # One repository: said of the beads too, so that SQLite walks that
    # repository's part of the order index, not every open bead's.
    bead: list[str] = []
    bead_params: list[Any] = []
    if repository is not None:
        bead.append("AND b.repository_id = %s")
        bead_params.append(repository.pk)
    if bead_id is not None:
        bead.append("AND b.id = %s")
        bead_params.append(bead_id)
    return Filters(" ".join(clauses), params, " ".join(bead), bead_params)


def with_filters(template: str, found: Filters, **more: str) -> str:
    return template.format(
        repository_filter=found.room,
        held_back="",  # in found.room
        bead_filter=found.bead,
        under_blocked=UNDER_BLOCKED,
        b_blocked=B_BLOCKED,
        **TABLES,
        **more,
    )


def now_param() -> Any:
    # As the ORM stores it (SQLite: naive UTC text), so the comparison holds.
    return connection.ops.adapt_datetimefield_value(timezone.now())


def ready_rows(
    limit: int,
    repository: Repository | None = None,
    workspace: Workspace | None = None,
    repositories: Sequence[int] | None = None,
    holds: bool = True,
) -> list[dict[str, Any]]:
    """The first `limit` ready beads in hook order, as dicts of READY_FIELDS
    (`repo` is the repository's slug): one round trip, no model instances,
    a prepared statement on PostgreSQL. `holds=False`: as if nothing held a
    repository back."""
    rows = ready_raw(limit, repository, workspace, repositories, holds)
    return [as_bead_values(row) for row in rows]


def ready_raw(
    limit: int,
    repository: Repository | None = None,
    workspace: Workspace | None = None,
    repositories: Sequence[int] | None = None,
    holds: bool = True,
) -> list[Sequence[Any]]:
    """ready_rows() as the database returns them: READY_FIELDS in order, the
    JSON columns as their text where the database gives text (for the API to
    write out as they are, rather than parse and write again)."""
    found = filters(repository, workspace, repositories, holds=holds)
    if found is None:
        return []
    params = [*found.room_params, now_param(), *found.bead_params, limit, limit, limit]
    return [row[2:] for row in fetch(with_filters(READY_SQL, found), params)]


def fetch(sql: str, params: Sequence[Any], one: bool = False) -> Any:
    """Run one of the hook's statements: on PostgreSQL through a psycopg cursor
    that binds on the server and prepares the statement (its text is the same
    for every call of a kind, so each connection plans it once; Django's own
    cursors bind on the client and never prepare); elsewhere Django's cursor."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if one else cursor.fetchall()
    connection.ensure_connection()
    raw = connection.connection
    with psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone() if one else cursor.fetchall()


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

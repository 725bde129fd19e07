"""The hook's one-statement first page (hook.ready_rows) answers exactly as
its querysets do (hook.first_ready), on random graphs of beads (some pinned
or not work, some waiting out a back-off), blocking and parent-child
dependencies, plans with waves and caps, and repositories with caps."""

import random
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from beads import hook
from beads.models import Bead, Dependency, Plan, Wave, WaveBead
from workspace.models import Repository, Workspace

STATUSES = ["open"] * 6 + ["in_progress", "in_progress", "review", "closed", "closed", "blocked"]
FIELDS = ["id", "title", "status", "priority", "issue_type", "labels", "scope", "assignee"]


def random_world(
    rng: random.Random, loops: bool = False
) -> tuple[list[Workspace], list[Repository]]:
    spaces = [Workspace.objects.create(name=f"w{n}", slug=f"w{n}") for n in range(2)]
    repos = [
        Repository.objects.create(
            workspace=rng.choice(spaces),
            name=f"r{n}",
            slug=f"r{n}",
            bead_prefix=f"r{n}",
            max_agents=rng.randint(1, 4),
            active=rng.random() > 0.15,
        )
        for n in range(5)
    ]
    start = timezone.now() - timedelta(days=10)
    now = timezone.now()
    waits = now + timedelta(minutes=2)
    beads = []
    for n in range(rng.randint(20, 70)):
        beads.append(
            Bead.objects.create(
                repository=rng.choice(repos),
                title=f"bead {n}",
                status=rng.choice(STATUSES),
                priority=rng.randint(0, 4),
                issue_type="epic" if rng.random() < 0.08 else "task",
                labels=[rng.choice(["a", "b"])],
                scope=[f"src/{n}/**"],
                created_at=start + timedelta(minutes=rng.randint(0, 30)),  # ties happen
                pinned=rng.random() < 0.05,  # bd's pinned, ephemeral and non-work beads
                not_work=rng.random() < 0.05,
                # Refused again and again: waiting out a back-off, or done waiting.
                not_before=rng.choice([None] * 6 + [now - timedelta(seconds=5), waits]),
            )
        )
    for n, issue in enumerate(beads):
        for blocker in rng.sample(beads[:n], k=min(n, rng.choice([0, 0, 1, 2]))):
            kind = rng.choice(["blocks"] * 5 + ["related", "parent-child", "conditional-blocks"])
            Dependency.objects.create(issue=issue, depends_on=blocker, type=kind)
    unplanned = beads[:]
    rng.shuffle(unplanned)
    for p in range(rng.randint(0, 3)):
        status = rng.choice(["active", "active", "draft", "done"])
        plan = Plan.objects.create(
            workspace=spaces[0], name=f"p{p}", status=status, max_agents_per_wave=rng.randint(1, 3)
        )
        for number in range(1, rng.randint(2, 4)):
            wave = Wave.objects.create(plan=plan, number=number)
            for _ in range(rng.randint(1, 5)):
                if unplanned:  # a bead in one plan at most, so in one active plan at most
                    WaveBead.objects.create(wave=wave, bead=unplanned.pop())
    if loops:  # parent-child links back up the graph: loops, which bd does not refuse
        for _ in range(len(beads) // 4):
            child, parent = rng.sample(beads, k=2)
            pair = Dependency.objects.filter(issue=child, depends_on=parent)
            if not pair.exists():
                Dependency.objects.create(issue=child, depends_on=parent, type="parent-child")
    return spaces, repos


def as_values(bead: Bead) -> dict:
    return {key: getattr(bead, key) for key in FIELDS} | {"repo": bead.repository.slug}


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(12))
def test_the_statement_answers_as_the_querysets_do(seed):
    rng = random.Random(seed)
    spaces, repos = random_world(rng)
    some = [r.pk for r in rng.sample(repos, k=3)]
    filters = [
        {},
        {"workspace": spaces[0]},
        {"workspace": spaces[1]},
        {"repository": rng.choice(repos)},
        {"repositories": some},
        {"workspace": spaces[0], "repositories": some},
        {"repositories": []},
    ]
    for limit in (1, 3, 10, 500):
        for given in filters:
            expected = [as_values(b) for b in hook.first_ready(limit, **given)]
            rows = hook.ready_rows(limit, **given)
            got = [{key: row[key] for key in [*FIELDS, "repo"]} for row in rows]
            assert got == expected, (seed, limit, given)


def blocked_by_definition() -> set[str]:
    """The blocked beads as the hook's docstring says, computed here in Python."""
    active = set(
        Bead.objects.exclude(status="closed").filter(pinned=False).values_list("pk", flat=True)
    )
    links = list(Dependency.objects.values_list("issue_id", "depends_on_id", "type"))
    blocked = {
        issue
        for issue, blocker, kind in links
        if kind in ("blocks", "conditional-blocks") and issue in active and blocker in active
    }
    children = [(issue, parent) for issue, parent, kind in links if kind == "parent-child"]
    grown = True
    while grown:
        below = {child for child, parent in children if parent in blocked}
        grown = not below <= blocked
        blocked |= below
    return blocked


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(8))
def test_blocked_is_what_the_definition_says_parent_child_loops_included(seed):
    random_world(random.Random(seed), loops=True)
    blocked = blocked_by_definition()
    active = Bead.objects.exclude(status="closed").filter(pinned=False)
    assert {b.pk for b in Bead.objects.all() if hook.is_blocked(b)} == blocked
    assert set(hook.unblocked(active).values_list("pk", flat=True)) == set(
        active.exclude(pk__in=blocked).values_list("pk", flat=True)
    )
    for limit in (3, 500):
        expected = [as_values(b) for b in hook.first_ready(limit)]
        got = [{key: row[key] for key in [*FIELDS, "repo"]} for row in hook.ready_rows(limit)]
        assert got == expected, (seed, limit)
        assert not {row["id"] for row in got} & blocked


@pytest.mark.django_db
def test_a_deep_parent_child_chain_under_a_blocked_epic_waits_for_its_blocker(repo):
    blocker = Bead.objects.create(repository=repo, title="blocker")
    epic = Bead.objects.create(repository=repo, title="epic", issue_type="epic")
    Dependency.objects.create(issue=epic, depends_on=blocker, type="conditional-blocks")
    chain = [epic]
    for n in range(12):
        chain.append(Bead.objects.create(repository=repo, title=f"level {n}"))
        Dependency.objects.create(issue=chain[-1], depends_on=chain[-2], type="parent-child")
    # A loop at the bottom: the last child is also the parent of its own parent.
    Dependency.objects.create(issue=chain[-2], depends_on=chain[-1], type="parent-child")

    def ready_ids() -> tuple[set[str], set[str]]:
        return (
            {row["id"] for row in hook.ready_rows(100)},
            {b.pk for b in hook.first_ready(100)},
        )

    assert ready_ids() == ({blocker.pk}, {blocker.pk})
    assert all(hook.is_blocked(b) for b in chain)
    assert "child of a blocked bead" in hook.why_not_ready(chain[-1])
    Bead.objects.filter(pk=blocker.pk).update(status="closed")
    children = {b.pk for b in chain[1:]}
    assert ready_ids() == (children, children)
    assert not any(hook.is_blocked(b) for b in chain)


@pytest.mark.django_db
def test_rows_carry_what_the_api_shows(repo):
    bead = Bead.objects.create(repository=repo, title="x", labels=["ops"], scope=["src/**"])
    [row] = hook.ready_rows(5)
    assert row["id"] == bead.id and row["repo"] == repo.slug
    assert row["labels"] == ["ops"] and row["scope"] == ["src/**"]
    assert row["created_at"] == Bead.objects.get(pk=bead.pk).created_at
    assert row["attempts"] == 0 and row["status"] == "open"


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(10))
def test_the_first_per_repository_are_the_heads_of_the_whole_ready_queryset(seed):
    """The hook page's reading (counted and cut in the database) against the
    whole ready queryset read in hook order and cut here."""
    spaces, repos = random_world(random.Random(seed), loops=seed % 2 == 1)
    for space in spaces:
        whole: dict[int, list[str]] = {}
        for bead in hook.ready(workspace=space):
            whole.setdefault(bead.repository_id, []).append(bead.pk)
        for n in (1, 2, 5, 100):
            got: dict[int, list[str]] = {}
            for bead in hook.first_ready_per_repository(space, n):
                got.setdefault(bead.repository_id, []).append(bead.pk)
                assert bead.ready_count == len(whole[bead.repository_id]), (seed, n)
            assert got == {pk: ids[:n] for pk, ids in whole.items()}, (seed, n)


@pytest.mark.django_db
def test_the_first_of_many_repositories_walk_the_blocked_parents_once():
    """heads() reads each repository's part of the hook; the beads under a
    blocked parent are one walk for all of them, not one per repository."""
    spaces, repos = random_world(random.Random(3), loops=False)
    beads, _ = hook.eligible(workspace=spaces[0])
    with CaptureQueriesContext(connection) as queries:
        hook.heads(beads, [repo.pk for repo in repos], 2)
    (statement,) = [q["sql"] for q in queries.captured_queries]
    assert statement.count("under_blocked(id) AS") == 1

"""The claim as one statement per database (beads/hook.py CLAIM_PG and
CLAIM_SQLITE): it takes what the hook would hand out first, moves it, opens
the session with every column as Django would write it, and, raced from many
processes across repositories, keeps every guarantee: never one bead twice,
never over max_agents, the wave's cap, and a bead asked for by name once."""

import pytest

from agents.models import Agent, Session
from agents.moves import lifecycle
from beads import hook, plans
from beads.models import Bead, Dependency
from tests.races import race
from workspace import gitops
from workspace.models import Repository


def test_the_claim_takes_the_hooks_first_bead_and_opens_its_session(repo, agent):
    repo.max_agents = 10
    repo.save()
    later = Bead.objects.create(repository=repo, title="later", priority=3)
    first = Bead.objects.create(repository=repo, title="first", priority=1)
    blocked = Bead.objects.create(repository=repo, title="blocked", priority=0)
    Dependency.objects.create(issue=blocked, depends_on=later, type="blocks")
    assert hook.ready_rows(1, repository=repo)[0]["id"] == first.id

    session = lifecycle.claim(agent, repository=repo)
    stored = Session.objects.select_related("bead").get(pk=session.pk)
    assert stored.bead_id == first.id and session.bead.title == "first"
    assert stored.status == "claimed" and stored.agent_id == agent.pk
    assert stored.base_sha == gitops.head_sha(repo.canonical_path, repo.branch)
    assert stored.lease_expires_at == session.lease_expires_at
    assert stored.context == "" and stored.changed_files == [] and stored.patch_summary == {}
    assert stored.bead.status == "in_progress" and stored.bead.assignee == agent.name
    assert stored.bead.not_before is None
    assert session.bead.repository.slug == repo.slug  # the bead as the ORM reads it


def test_a_claim_from_any_repository_reads_its_head_after(repo, make_repo, agent):
    other = make_repo("other")
    only = Bead.objects.create(repository=other, title="only")
    session = lifecycle.claim(agent)  # no repository named: the head is read once known
    assert session.bead_id == only.id
    stored = Session.objects.get(pk=session.pk)
    assert stored.base_sha == gitops.head_sha(other.canonical_path, other.branch) != ""


def test_a_session_is_created_when_its_bead_is_claimed_not_when_its_row_was_built(repo, agent):
    # A claimer builds the session's row, then waits (git, the lock) while the
    # bead's blocker lands: the session must not seem to start before that.
    blocker = Bead.objects.create(repository=repo, title="blocker")
    waiting = Bead.objects.create(repository=repo, title="waiting")
    Dependency.objects.create(issue=waiting, depends_on=blocker, type="blocks")
    opening = hook.Opening(**Session.to_open(agent).opening())
    assert blocker.close("done")
    blocker.refresh_from_db()

    claimed = hook.claim(agent.name, opening, repository=repo)
    stored = Session.objects.get(bead=waiting)
    assert stored.created_at >= blocker.closed_at
    assert claimed.at == stored.created_at


def claim_anywhere(agent_id, repo_ids, n):
    agent = Agent.objects.get(pk=agent_id)
    got = []
    for _ in range(n):
        try:
            got.append(lifecycle.claim(agent, repositories=repo_ids).bead_id)
        except hook.NothingReady:
            got.append(None)
    return got


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_claimers_across_repositories_keep_every_cap(make_repo, agent):
    """Twelve processes claim across three repositories (max_agents 2, 3 and 50)
    and a plan's wave (3 per wave): never a bead twice, never over a cap."""
    caps = {"a": 2, "b": 3, "c": 50}
    repos = {name: make_repo(name) for name in caps}
    for name, repo in repos.items():
        repo.max_agents = caps[name]
        repo.save()
        Bead.objects.bulk_create(
            [Bead(repository=repo, title=f"{name}{i}", id=f"{repo.bead_prefix}-{i:03d}")
             for i in range(12)]
        )  # fmt: skip
    wave = list(Bead.objects.filter(repository=repos["c"]).order_by("id")[:6])
    plan = plans.start_with(repos["c"].workspace, "p", [[b.id for b in wave]], 3)
    plan.activate()
    ids = [r.pk for r in repos.values()]
    results = race(claim_anywhere, [(agent.pk, ids, 4)] * 12)
    claimed = [b for batch in results for b in batch if b is not None]
    assert len(claimed) == len(set(claimed))
    assert Session.objects.count() == len(claimed)
    for name, repo in repos.items():
        held = Bead.objects.filter(repository=repo, status="in_progress").count()
        assert held <= caps[name], (name, held)
    assert Bead.objects.filter(pk__in=[b.id for b in wave], status="in_progress").count() <= 3
    assert Bead.objects.filter(repository=repos["a"], status="in_progress").count() == 2


def claim_bead(agent_id, bead_id):
    agent = Agent.objects.get(pk=agent_id)
    try:
        return lifecycle.claim(agent, bead=Bead.objects.get(pk=bead_id)).bead_id
    except hook.NotClaimable:
        return None


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_one_bead_asked_for_by_name_by_eight_at_once_is_claimed_once(repo, agent):
    repo.max_agents = 100
    repo.save()
    wanted = Bead.objects.create(repository=repo, title="wanted")
    Bead.objects.create(repository=repo, title="another", priority=0)
    results = race(claim_bead, [(agent.pk, wanted.id)] * 8)
    assert results.count(wanted.id) == 1 and results.count(None) == 7
    assert list(Session.objects.values_list("bead_id", flat=True)) == [wanted.id]
    assert Repository.objects.get(pk=repo.pk).beads.filter(status="in_progress").count() == 1

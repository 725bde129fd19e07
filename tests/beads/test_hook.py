"""The hook: readiness, order, and atomic claims under real concurrency."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.jobs import reconcile
from agents.models import Agent, Session
from agents.moves import lifecycle
from beads import hook
from beads.models import Bead, Dependency, Plan, Wave, WaveBead
from tests.races import race
from workspace.models import Repository


def bead(repo, title="b", **fields):
    return Bead.objects.create(repository=repo, title=title, **fields)


def ready_ids(**kwargs):
    return [b.id for b in hook.ready(**kwargs)]


def test_blocked_by_an_open_bead_in_another_repository_until_it_closes(make_repo):
    api, web = make_repo("api"), make_repo("web")
    endpoint, page = bead(api, "endpoint"), bead(web, "page")
    Dependency.objects.create(issue=page, depends_on=endpoint)
    assert ready_ids(repository=web) == []
    endpoint.close()
    assert ready_ids(repository=web) == [page.id]


def test_only_blocks_dependencies_hold_a_bead_back(repo):
    a, b = bead(repo, "a"), bead(repo, "b")
    Dependency.objects.create(issue=b, depends_on=a, type="related")
    assert set(ready_ids()) == {a.id, b.id}


def test_order_is_priority_then_age(repo):
    low = bead(repo, "low", priority=3)
    old = bead(repo, "old", priority=1, created_at=timezone.now() - timedelta(hours=1))
    new = bead(repo, "new", priority=1)
    top = bead(repo, "top", priority=0)
    assert ready_ids() == [top.id, old.id, new.id, low.id]


def test_only_open_non_epic_beads_of_active_repositories(repo, make_repo):
    ready = bead(repo, "ready")
    for status in ["in_progress", "review", "blocked", "deferred", "closed"]:
        bead(repo, status, status=status)
    bead(repo, "epic", issue_type="epic")
    idle = make_repo("idle")
    bead(idle, "idle")
    Repository.objects.filter(pk=idle.pk).update(active=False)
    assert ready_ids() == [ready.id]


def test_a_repository_at_max_agents_offers_nothing(repo):
    repo.max_agents = 2
    repo.save()
    waiting = bead(repo, "waiting")
    bead(repo, "busy 1", status="in_progress")
    assert ready_ids() == [waiting.id]
    bead(repo, "busy 2", status="in_progress")
    assert ready_ids() == []


def test_wave_gating_and_wave_order(repo, workspace):
    plan = Plan.objects.create(workspace=workspace, name="p", max_agents_per_wave=5)
    first, second = (Wave.objects.create(plan=plan, number=n) for n in (1, 2))
    w1 = bead(repo, "wave 1", priority=4)
    w2 = bead(repo, "wave 2", priority=0)
    loose = bead(repo, "unplanned", priority=0)
    WaveBead.objects.create(wave=first, bead=w1)
    WaveBead.objects.create(wave=second, bead=w2)
    assert ready_ids() == [w2.id, loose.id, w1.id]  # a draft plan gates nothing
    plan.activate()
    assert ready_ids() == [w1.id, loose.id]
    w1.close()
    assert ready_ids() == [w2.id, loose.id]


def test_the_first_page_of_the_hook_is_its_head(repo, workspace):
    plan = Plan.objects.create(workspace=workspace, name="p")
    first, second = (Wave.objects.create(plan=plan, number=n) for n in (1, 2))
    planned = [bead(repo, f"planned {n}", priority=4) for n in range(3)]
    for n, item in enumerate(planned):
        WaveBead.objects.create(wave=first if n < 2 else second, bead=item)
    for n in range(6):
        bead(repo, f"loose {n}", priority=n % 3)
    plan.activate()
    whole = ready_ids()
    assert whole[:2] == [planned[0].id, planned[1].id] and planned[2].id not in whole
    assert [b.id for b in hook.first_ready(5)] == whole[:5]
    assert [b.id for b in hook.first_ready(50, repository=repo)] == whole


def test_a_wave_holds_no_more_agents_than_its_plan_allows(repo, workspace):
    plan = Plan.objects.create(workspace=workspace, name="p", max_agents_per_wave=1)
    wave = Wave.objects.create(plan=plan, number=1)
    a, b = bead(repo, "a"), bead(repo, "b")
    for item in (a, b):
        WaveBead.objects.create(wave=wave, bead=item)
    plan.activate()
    assert len(ready_ids()) == 2
    a.start("x")
    assert ready_ids() == []


def test_claim_creates_a_leased_session_on_the_head(repo, agent):
    target = bead(repo, "work")
    session = lifecycle.claim(agent)
    target.refresh_from_db()
    assert session.bead == target and target.status == "in_progress"
    assert target.assignee == agent.name
    assert session.status == "claimed" and session.lease_expires_at > timezone.now()
    assert len(session.base_sha) == 40
    with pytest.raises(hook.NothingReady):
        lifecycle.claim(agent)


def test_claiming_a_bead_that_is_not_ready_says_why(make_repo, agent):
    repo = make_repo("api")
    first, second = bead(repo, "first"), bead(repo, "second")
    Dependency.objects.create(issue=second, depends_on=first)
    with pytest.raises(hook.NotClaimable, match=f"waits for {first.id}"):
        lifecycle.claim(agent, bead=second)
    lifecycle.claim(agent, bead=first)
    with pytest.raises(hook.NotClaimable, match="in progress"):
        lifecycle.claim(agent, bead=first)


def test_an_expired_lease_loses_the_session_and_returns_the_bead(repo, agent):
    target = bead(repo, "work")
    session = lifecycle.claim(agent)
    Session.objects.filter(pk=session.pk).update(lease_expires_at=timezone.now())
    assert reconcile.reconcile()["lost"] == 1
    session.refresh_from_db()
    target.refresh_from_db()
    assert session.status == "lost"
    assert (target.status, target.attempts) == ("open", 1)
    assert "lease expired" in target.last_failure
    assert reconcile.reconcile()["lost"] == 0


def test_a_heartbeat_keeps_the_lease(repo, agent):
    bead(repo, "work")
    session = lifecycle.claim(agent)
    Session.objects.filter(pk=session.pk).update(
        lease_expires_at=timezone.now() + timedelta(seconds=1)
    )
    assert session.heartbeat()
    assert reconcile.reconcile()["lost"] == 0
    session.refresh_from_db()
    assert session.lease_expires_at > timezone.now() + timedelta(seconds=60)


def claim_one(agent_id, repo_id):
    agent = Agent.objects.get(pk=agent_id)
    try:
        return lifecycle.claim(agent, repository=Repository.objects.get(pk=repo_id)).bead_id
    except hook.NothingReady:
        return None


def claim_many(agent_id, repo_id, n):
    return [claim_one(agent_id, repo_id) for _ in range(n)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_thirty_two_claimers_one_ready_bead_exactly_one_wins(repo, agent):
    repo.max_agents = 100
    repo.save()
    only = bead(repo, "the one")
    results = race(claim_one, [(agent.pk, repo.pk)] * 32)
    assert results.count(only.id) == 1
    assert results.count(None) == 31
    assert Session.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_sixteen_claimers_five_hundred_beads_never_the_same_twice(repo, agent):
    repo.max_agents = 1000
    repo.save()
    Bead.objects.bulk_create(
        [Bead(repository=repo, title=f"b{i}", id=f"{repo.bead_prefix}-{i:04d}") for i in range(500)]
    )
    results = race(claim_many, [(agent.pk, repo.pk, 32)] * 16)  # 512 claims for 500 beads
    claimed = [b for batch in results for b in batch if b is not None]
    assert len(claimed) == 500 and len(set(claimed)) == 500
    assert Session.objects.count() == 500
    assert sum(b is None for batch in results for b in batch) == 12
    assert not Bead.objects.filter(status="open").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_concurrent_claims_never_exceed_max_agents(repo, agent):
    repo.max_agents = 3
    repo.save()
    for i in range(20):
        bead(repo, f"b{i}")
    results = race(claim_one, [(agent.pk, repo.pk)] * 12)
    assert len([r for r in results if r]) == 3
    assert Bead.objects.filter(status="in_progress").count() == 3

"""A change set's landing killed at every journal step, and two landing at once:
real lead processes, real repositories, real Redis. After recovery every
member's commit is on its branch exactly once, or none is."""

import pytest

from agents.jobs import integration, lead, reconcile
from agents.models import ChangeSet
from agents.moves import changesets
from tests.agents.test_changesets import bead, hand_in, work
from tests.factories import commits, git
from tests.procs import Running
from tests.races import race

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
# The steps of a two-member landing: before the journal, after it, then each
# branch moved and each journal row marked.
STEPS = {
    1: "commits built, journal not written",
    2: "journal written, no branch moved",
    3: "api moved, its row not marked",
    4: "api moved and marked",
    5: "web moved, its row not marked",
    6: "web moved and marked, not finished",
}


@pytest.fixture
def api(make_repo):
    return make_repo("api")


@pytest.fixture
def web(make_repo):
    return make_repo("web")


def gating(api, web, agent):
    """A change set whose members are both held; its job waits on the lead queue."""
    a, w = bead(api, "Serve v2"), bead(web, "Expect v2")
    changeset = changesets.create("v2", [a, w], api.workspace)
    hand_in(a, agent, {"version": "2\n"})
    work(api)
    hand_in(w, agent, {"expects": "2\n"})
    lead.drain(web.pk)  # the drain that holds it, and not the job that follows
    changeset.refresh_from_db()
    assert changeset.status == "gating"
    return changeset


def lead_worker(env, repo):
    return Running(["manage.py", "leadworker", repo.slug, "--burst"], env)


def landed_once(repo, changeset):
    """How many commits on the branch carry the change set's trailer."""
    found = git(repo.canonical_path, "log", "--format=%H", f"--grep=Changeset: {changeset.pk}")
    return len(found.split())


@pytest.mark.parametrize("step", sorted(STEPS), ids=lambda n: f"{n}-{STEPS[n][:20]}")
def test_a_lead_killed_at_any_journal_step_lands_all_exactly_once(
    step, api, web, agent, rq_redis, subprocess_env
):
    changeset = gating(api, web, agent)
    crashing = lead_worker(dict(subprocess_env, CORRAL_CHANGESET_CRASH_AT=str(step)), api)
    try:
        assert crashing.wait(120) == -9, crashing.output  # it SIGKILLed itself
    finally:
        crashing.kill_group()
    changeset.refresh_from_db()
    assert changeset.status == "landing"
    moved = {"api": landed_once(api, changeset), "web": landed_once(web, changeset)}
    assert moved == {"api": int(step >= 3), "web": int(step >= 5)}  # half landed, for now
    restarted = lead_worker(subprocess_env, api)
    try:
        assert restarted.wait(120) == 0, restarted.output
    finally:
        restarted.kill_group()
    assert "change set(s) in flight from api: finished" in restarted.output
    changeset.refresh_from_db()
    assert changeset.status == "landed"
    assert (landed_once(api, changeset), landed_once(web, changeset)) == (1, 1)
    assert commits(api) == commits(web) == 3
    for member in changeset.members.select_related("bead", "submission"):
        assert member.bead.status == "closed" and member.submission.status == "committed"
        assert member.bead.commit_sha == git(member.repository.canonical_path, "rev-parse", "main")


def test_a_lead_killed_mid_revert_reverts_every_member_exactly_once(
    api, web, agent, rq_redis, subprocess_env
):
    changeset = gating(api, web, agent)
    work(api, web)
    changeset.refresh_from_db()
    assert changeset.status == "landed" and changesets.request_revert(changeset)
    crashing = lead_worker(dict(subprocess_env, CORRAL_CHANGESET_CRASH_AT="3"), api)
    try:
        assert crashing.wait(120) == -9, crashing.output  # api reverted, web not yet
    finally:
        crashing.kill_group()
    assert (reverts(api, changeset), reverts(web, changeset)) == (1, 0)
    restarted = lead_worker(subprocess_env, api)
    try:
        assert restarted.wait(120) == 0, restarted.output
    finally:
        restarted.kill_group()
    changeset.refresh_from_db()
    assert changeset.status == "reverted"
    assert (reverts(api, changeset), reverts(web, changeset)) == (1, 1)
    for member in changeset.members.select_related("bead"):
        assert member.bead.status == "open"


def reverts(repo, changeset):
    found = git(repo.canonical_path, "log", "--format=%H", "--grep=^Reverts: ", "main")
    tagged = [sha for sha in found.split() if f"Changeset: {changeset.pk}" in message(repo, sha)]
    return len(tagged)


def message(repo, sha):
    return git(repo.canonical_path, "log", "-1", "--format=%B", sha)


def test_a_branch_moved_outside_corral_mid_landing_undoes_the_moves_made(
    api, web, agent, rq_redis, subprocess_env, tmp_path
):
    changeset = gating(api, web, agent)
    before = git(api.canonical_path, "rev-parse", "main")
    crashing = lead_worker(dict(subprocess_env, CORRAL_CHANGESET_CRASH_AT="4"), api)
    try:
        assert crashing.wait(120) == -9, crashing.output
    finally:
        crashing.kill_group()
    assert landed_once(api, changeset) == 1  # api moved, web not yet
    # Someone pushes to web's canonical branch behind Corral's back.
    outside = tmp_path / "outside"
    git(tmp_path, "clone", "-q", str(web.canonical_path), str(outside))
    (outside / "hotfix.txt").write_text("hot\n")
    git(outside, "add", "-A")
    git(outside, "commit", "-q", "-m", "hotfix")
    git(outside, "push", "-q", "origin", "HEAD:main")
    integration.run(changeset.pk)  # the next lead plays the journal: web cannot move
    changeset.refresh_from_db()
    assert changeset.status == "open" and "moved outside Corral" in changeset.reason
    assert git(api.canonical_path, "rev-parse", "main") == before  # none stays
    assert landed_once(api, changeset) == landed_once(web, changeset) == 0
    assert set(changeset.journal.values_list("state", flat=True)) == {"undone"}
    work(api, web)  # both members gated again on the new heads, then land together
    changeset.refresh_from_db()
    assert changeset.status == "landed"
    assert (landed_once(api, changeset), landed_once(web, changeset)) == (1, 1)
    assert "hotfix" in git(web.canonical_path, "log", "--format=%s", "main")


def test_reconcile_finishes_a_landing_whose_job_vanished(api, web, agent, rq_redis):
    changeset = gating(api, web, agent)
    ChangeSet.objects.filter(pk=changeset.pk).update(status="landing")  # a lead died before
    rq_redis.flushdb()  # the journal, and Redis lost its job
    assert reconcile.reconcile()["changesets"] == 1
    work(api, web)
    changeset.refresh_from_db()
    assert changeset.status == "landed"
    assert (landed_once(api, changeset), landed_once(web, changeset)) == (1, 1)


def land_changeset(changeset_id):
    integration.run(changeset_id)
    return ChangeSet.objects.get(pk=changeset_id).status


def test_two_overlapping_change_sets_landing_at_once_both_land(
    api, web, make_repo, agent, rq_redis
):
    ops = make_repo("ops")
    first = changesets.create("one", [bead(api), bead(web)], api.workspace)
    second = changesets.create("two", [bead(web), bead(ops)], api.workspace)
    for n, changeset in enumerate((first, second)):
        for member in changeset.member_list():
            hand_in(member.bead, agent, {f"cs{n}.txt": f"{n}\n"})
    work(api, web, ops)  # both land, in some order, through the queues
    # ... and once more, racing in two processes with the queues bypassed:
    third = changesets.create("three", [bead(api), bead(web)], api.workspace)
    fourth = changesets.create("four", [bead(ops), bead(web), bead(api)], api.workspace)
    for n, changeset in enumerate((third, fourth), 2):
        for member in changeset.member_list():
            hand_in(member.bead, agent, {f"cs{n}.txt": f"{n}\n"})
    for repo in (api, web, ops):
        work(repo)
    outcomes = race(land_changeset, [(third.pk,), (fourth.pk,)], timeout=120)
    # No deadlock: both finished. The one that took the locks second found web
    # moved by the first, so its web member is gated again and it lands after.
    assert "landed" in outcomes and set(outcomes) <= {"landed", "open"}
    work(api, web, ops)
    for changeset in (first, second, third, fourth):
        changeset.refresh_from_db()
        assert changeset.status == "landed"
    assert (commits(api), commits(web), commits(ops)) == (2 + 3, 2 + 4, 2 + 2)

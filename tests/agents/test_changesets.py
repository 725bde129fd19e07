"""Change sets: beads of several repositories land together, or none of them does."""

import pytest
from django.db import IntegrityError, transaction
from rq import SimpleWorker

from agents import queues
from agents.jobs import integration, lead, reconcile
from agents.models import ChangeSet, ChangeSetMember, Submission
from agents.moves import changesets, lifecycle
from beads.models import Bead, Dependency, Plan, Wave, WaveBead
from knowledge import inject
from tests.factories import commits, git, make_patch, submit
from tests.races import race
from workspace import gitops

pytestmark = pytest.mark.django_db(transaction=True)
# The web client must expect the version the api serves: the integration gate.
AGREE = ["sh", "-c", 'test "$(cat api/version)" = "$(cat web/expects)"']


@pytest.fixture
def api(make_repo):
    return make_repo("api")


@pytest.fixture
def web(make_repo):
    return make_repo("web")


def work(*repos):
    """Work the lead queues of `repos` until all are empty, in this process."""
    queue_list = [queues.lead_queue(r) for r in repos]
    SimpleWorker(queue_list, connection=queues.connection()).work(burst=True)


def bead(repo, title="Follow the API"):
    return Bead.objects.create(repository=repo, title=title, scope=["**"])


def hand_in(member, agent, files):
    base, patch = make_patch(member.repository, files)
    return submit(member, agent, patch, base)


def pair(api, web, command=AGREE):
    a, w = bead(api, "Serve v2"), bead(web, "Expect v2")
    changeset = changesets.create("API v2", [a, w], api.workspace, command=command)
    return changeset, a, w


def status(obj):
    obj.refresh_from_db()
    return obj.status


def message(repo, sha):
    return git(repo.canonical_path, "log", "-1", "--format=%B", sha)


@pytest.mark.slow
def test_two_members_land_together_with_changeset_trailers(api, web, agent, rq_redis):
    changeset, a, w = pair(api, web)
    sub_a = hand_in(a, agent, {"version": "2\n"})
    work(api, web)
    assert status(sub_a) == "held" and commits(api) == 2  # waits for its sibling
    assert status(changeset) == "open"
    sub_w = hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    assert status(changeset) == "landed", changeset.reason
    assert (status(a), status(w), status(sub_a), status(sub_w)) == ("closed",) * 2 + (
        "committed",
    ) * 2
    assert commits(api) == commits(web) == 3
    for repo, member, sub in ((api, a, sub_a), (web, w, sub_w)):
        text = message(repo, member.commit_sha)
        assert f"Bead: {member.id}\nAgent: agent-1\nSession: {sub.session_id}\n" in text
        assert text.rstrip().endswith(f"Changeset: {changeset.pk}")
        assert member.commit_sha == gitops.head_sha(repo.canonical_path, repo.branch)
    assert changeset.integration_passed and "Passed." in changeset.integration_output
    assert list(changeset.journal.values_list("state", flat=True)) == ["advanced"] * 2
    assert not ChangeSetMember.objects.filter(active=True).exists()


def test_a_member_whose_check_fails_lands_nothing(api, web, agent, rq_redis):
    web.check_command = "sh -c 'grep -q 2 expects'"
    web.save()
    changeset, a, w = pair(api, web)
    sub_a = hand_in(a, agent, {"version": "2\n"})
    sub_w = hand_in(w, agent, {"expects": "3\n"})
    work(api, web)
    assert (status(sub_a), status(sub_w)) == ("rejected", "rejected")
    assert commits(api) == commits(web) == 2
    assert (status(a), status(w), status(changeset)) == ("open", "open", "open")
    assert "check gate" in w.last_failure
    assert f"{w.id} was refused" in a.last_failure and a.attempts == 1


@pytest.mark.slow
def test_a_failing_integration_command_lands_nothing(api, web, agent, rq_redis):
    changeset, a, w = pair(api, web)
    sub_a = hand_in(a, agent, {"version": "2\n"})
    sub_w = hand_in(w, agent, {"expects": "1\n"})
    work(api, web)
    assert commits(api) == commits(web) == 2
    assert (status(sub_a), status(sub_w)) == ("rejected", "rejected")
    assert status(changeset) == "open" and changeset.integration_passed is False
    assert changeset.attempts == 1 and not changeset.journal.exists()
    for member in (a, w):
        assert status(member) == "open"
        assert "the integration gate failed" in member.last_failure
        assert "Exit code 1" in member.last_failure
    # The next session on a member reads the failing output in its context pack.
    session = lifecycle.claim(agent, bead=a)
    pack = inject.render_context(session, 40_000)
    assert "Why the last attempt failed" in pack and "the integration gate failed" in pack


@pytest.mark.slow
def test_three_failed_integrations_refuse_the_change_set_and_block_its_beads(
    api, web, agent, rq_redis
):
    changeset, a, w = pair(api, web, command=["false"])
    for _ in range(3):
        hand_in(a, agent, {"version": "2\n"})
        hand_in(w, agent, {"expects": "2\n"})
        work(api, web)
        a.refresh_from_db()
        w.refresh_from_db()
    assert (a.status, w.status, a.attempts) == ("blocked", "blocked", 3)
    assert status(changeset) == "refused" and "ran out of attempts" in changeset.reason
    assert not ChangeSetMember.objects.filter(active=True).exists()  # free for another


@pytest.mark.slow
def test_a_head_that_moves_before_landing_rebuilds_and_retests(api, web, agent, rq_redis):
    changeset, a, w = pair(api, web)
    sub_a, sub_w = held_and_gating(api, web, a, w, agent)
    held_tree = ChangeSetMember.objects.get(bead=w).tree
    # Someone lands on web before the change set's job runs.
    other = bead(web, "Unrelated")
    hand_in(other, agent, {"other.txt": "x\n"})
    lead.drain(web.pk)  # not through the queue, where the change set's job waits
    assert status(other) == "closed"
    run_changeset(changeset)  # the heads moved: web is gated again, then all land
    assert status(changeset) == "open"
    assert "web moved since the candidates were built" in changeset.reason
    work(api, web)
    assert status(changeset) == "landed"
    assert (status(sub_a), status(sub_w)) == ("committed", "committed")
    member = ChangeSetMember.objects.get(bead=w)
    assert status(w) == "closed"
    assert member.tree != held_tree and member.head == other.commit_sha
    assert git(web.canonical_path, "rev-parse", f"{w.commit_sha}^") == other.commit_sha
    assert sub_w.gate_results.filter(gate="apply").count() == 1  # gates ran again, anew
    # Landed, it says no more why it was sent back once: its attempts keep count.
    assert (changeset.reason, changeset.attempts) == ("", 1)


def test_a_submission_gated_again_forgets_what_was_said_of_it(api, web, agent, rq_redis):
    changeset, a, w = pair(api, web)
    sub_a, _ = held_and_gating(api, web, a, w, agent)
    Submission.objects.filter(pk=sub_a.pk).update(reason="Held: api moved meanwhile.")
    sub_a.refresh_from_db()
    assert sub_a.requeue()
    sub_a.refresh_from_db()
    assert (sub_a.status, sub_a.reason) == ("queued", "")


def run_changeset(changeset):
    integration.run(changeset.pk)


def held_and_gating(api, web, a, w, agent):
    """Both members held; the change set's job waits on the lead queue, not run yet."""
    sub_a = hand_in(a, agent, {"version": "2\n"})
    work(api)
    sub_w = hand_in(w, agent, {"expects": "2\n"})
    lead.drain(web.pk)  # the drain that holds it, and not the job that follows
    assert status(a.changeset_members.get().changeset) == "gating"
    return sub_a, sub_w


def test_a_bead_is_in_one_open_change_set_at_a_time(api, web):
    changeset, a, w = pair(api, web)
    with pytest.raises(changesets.Taken, match=a.id):
        changesets.create("Again", [a, bead(web)], api.workspace)
    with pytest.raises(IntegrityError), transaction.atomic():
        ChangeSetMember.objects.create(
            changeset=ChangeSet.objects.create(workspace=api.workspace, title="raw"),
            bead=a,
            repository=api,
        )
    ChangeSetMember.objects.filter(changeset=changeset).update(active=False)  # it ended
    assert changesets.create("Later", [a, w], api.workspace).members.count() == 2


def test_a_change_set_needs_two_repositories(api, web):
    with pytest.raises(Exception, match="two or more repositories"):
        changesets.create("One repo", [bead(api), bead(api)], api.workspace)


def test_api_creates_a_change_set_from_beads_or_an_epic(api, web, logged_in, agent):
    a, w = bead(api), bead(web)
    made = logged_in.post(
        "/api/v1/changesets",
        {"title": "v2", "beads": [a.id, w.id], "integration_command": AGREE},
        content_type="application/json",
    )
    assert made.status_code == 201, made.content
    body = made.json()
    assert [m["repo"] for m in body["members"]] == ["api", "web"]
    assert body["status"] == "open" and body["integration_command"] == AGREE
    again = logged_in.post(
        "/api/v1/changesets", {"beads": [a.id, w.id], "title": "x"}, content_type="application/json"
    )
    assert again.status_code == 409 and a.id in again.json()["detail"]
    epic = Bead.objects.create(repository=api, title="Epic v3", issue_type="epic")
    for child in (bead(api), bead(web)):
        Dependency.objects.create(issue=child, depends_on=epic, type="parent-child")
    from_epic = logged_in.post(
        "/api/v1/changesets", {"epic": epic.id}, content_type="application/json"
    )
    assert from_epic.status_code == 201 and from_epic.json()["title"] == "Epic v3"
    shown = logged_in.get(f"/api/v1/changesets/{from_epic.json()['id']}")
    assert len(shown.json()["members"]) == 2


def test_api_creates_a_change_set_from_a_plan_wave(api, web, logged_in):
    plan = Plan.objects.create(workspace=api.workspace, name="Items v2")
    wave = Wave.objects.create(plan=plan, number=1)
    members = [bead(api), bead(web)]
    for member in members:
        WaveBead.objects.create(wave=wave, bead=member)
    made = logged_in.post("/api/v1/changesets", {"wave": wave.pk}, "application/json")
    assert made.status_code == 201, made.content
    assert made.json()["title"] == "Items v2, wave 1"
    assert {m["bead"] for m in made.json()["members"]} == {m.id for m in members}
    both = logged_in.post(
        "/api/v1/changesets", {"wave": wave.pk, "beads": [members[0].id]}, "application/json"
    )
    assert both.status_code == 422 and "one of beads, epic or wave" in str(both.json())


def test_api_refuses_bad_change_sets_with_reasons(api, web, logged_in, client, agent):
    a = bead(api)
    one = logged_in.post(
        "/api/v1/changesets", {"title": "x", "beads": [a.id, bead(api).id]}, "application/json"
    )
    assert one.status_code == 422 and "two or more" in str(one.json()["detail"])
    missing = logged_in.post(
        "/api/v1/changesets", {"title": "x", "beads": [a.id, "nope-1"]}, "application/json"
    )
    assert missing.status_code == 422 and "nope-1" in str(missing.json()["detail"])
    by_agent = client.post(
        "/api/v1/changesets",
        {"title": "x", "beads": [a.id, bead(web).id]},
        "application/json",
        headers={"Authorization": f"Bearer {agent.plain_token}"},
    )
    assert by_agent.status_code == 403


@pytest.mark.slow
def test_integration_output_is_for_people_and_the_members_own_agents(
    api, web, logged_in, client, agent, rq_redis
):
    changeset, a, w = pair(api, web, command=["sh", "-c", "echo secret-ish; exit 1"])
    hand_in(a, agent, {"version": "2\n"})
    hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    url = f"/api/v1/changesets/{changeset.pk}"
    assert "secret-ish" in logged_in.get(url).json()["integration_output"]
    as_agent = client.get(url, headers={"Authorization": f"Bearer {agent.plain_token}"})
    assert as_agent.status_code == 200 and as_agent.json()["integration_output"] == ""
    assert as_agent.json()["integration_passed"] is False


@pytest.mark.slow
def test_reverting_a_landed_change_set_reverts_every_member(api, web, agent, rq_redis):
    changeset, a, w = pair(api, web)
    hand_in(a, agent, {"version": "2\n"})
    hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    assert status(changeset) == "landed"
    assert changesets.request_revert(changeset)
    work(api, web)
    assert status(changeset) == "reverted"
    for repo, member, gone in ((api, a, "version"), (web, w, "expects")):
        member.refresh_from_db()
        assert member.status == "open" and commits(repo) == 4
        head = gitops.head_sha(repo.canonical_path, repo.branch)
        assert f"Changeset: {changeset.pk}" in message(repo, head)
        assert gone not in git(repo.canonical_path, "ls-tree", "--name-only", head).split()
    assert changeset.journal.filter(kind="revert", state="advanced").count() == 2


@pytest.mark.slow
def test_reconcile_requeues_a_change_set_left_gating(api, web, agent, rq_redis):
    changeset, a, w = pair(api, web)
    held_and_gating(api, web, a, w, agent)
    rq_redis.flushdb()  # Redis lost the change set's job
    assert reconcile.reconcile()["changesets"] == 1
    work(api, web)
    assert status(changeset) == "landed"


def hold_submission(submission_id):
    sub = Submission.objects.select_related("bead").get(pk=submission_id)
    return changesets.hold(sub, "head-" + sub.bead_id, "tree-" + sub.bead_id)


@pytest.mark.slow
def test_siblings_held_at_once_by_their_leads_start_gating_exactly_once(
    api, web, make_repo, agent, rq_redis
):
    ops = make_repo("ops")
    members = [bead(api), bead(web), bead(ops)]
    changeset = changesets.create("three", members, api.workspace)
    subs = [hand_in(member, agent, {"x.txt": "x\n"}) for member in members]
    Submission.objects.filter(pk__in=[s.pk for s in subs]).update(status="checking")
    assert race(hold_submission, [(s.pk,) for s in subs]) == [True] * 3
    assert status(changeset) == "gating"  # whichever was last saw the others held
    jobs = [j for j in queues.lead_queue(api).get_job_ids() if j.startswith("changeset-")]
    assert jobs == [f"changeset-{changeset.pk}"]


@pytest.mark.slow
def test_the_integration_command_sees_every_candidate_under_its_slug_and_no_secrets(
    api, web, agent, rq_redis, monkeypatch
):
    monkeypatch.setenv("CORRAL_TOKEN", "crl_not-for-agents")
    look = ["sh", "-c", "env; echo; find . -name version -o -name expects | sort"]
    changeset, a, w = pair(api, web, command=look)
    hand_in(a, agent, {"version": "2\n"})
    hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    changeset.refresh_from_db()
    out = changeset.integration_output
    assert "./api/version\n./web/expects" in out  # head + patch, at ./<slug>/
    assert "crl_not-for-agents" not in out and "REDIS_URL" not in out
    assert "DATABASE_URL" not in out and "SECRET_KEY" not in out
    assert status(changeset) == "landed"


@pytest.mark.slow
def test_an_integration_command_that_runs_too_long_is_stopped(api, web, agent, rq_redis):
    changeset, a, w = pair(api, web, command=["sleep", "30"])
    ChangeSet.objects.filter(pk=changeset.pk).update(integration_timeout_s=1)
    hand_in(a, agent, {"version": "2\n"})
    hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    changeset.refresh_from_db()
    assert "Timed out after 1" in changeset.integration_output
    assert changeset.status == "open" and commits(api) == commits(web) == 2


@pytest.mark.slow
def test_a_member_out_of_attempts_blocks_its_siblings_so_none_lands_alone(
    api, web, agent, rq_redis
):
    api.check_command = "false"
    api.save()
    changeset, a, w = pair(api, web)
    for _ in range(3):
        hand_in(a, agent, {"version": "2\n"})
        work(api)
        a.refresh_from_db()
    assert a.status == "blocked" and status(changeset) == "refused"
    assert status(w) == "blocked" and f"change set {changeset.pk} was refused" in w.last_failure
    assert "check gate" in changeset.reason

"""Pull-request mode: a bead's commit goes to `corral/<bead>` on the upstream, a
request is opened on the forge (a fake one that checks every request and
response against the forge's description), and the bead lands when the forge
has merged it; closed unmerged, the reviewers' words reach its next session."""

import pytest

from agents.jobs import forge as forge_job
from agents.jobs.runner import run_session
from agents.models import Agent, GateResult, Submission
from agents.moves import lifecycle
from tests.factories import git, run_bead, run_lead
from tests.forges.server import FakeForge
from tests.races import race
from workspace.forges import http
from workspace.models import Repository

pytestmark = pytest.mark.django_db(transaction=True)
EDIT = "Greet.\n\n```corral replace src/app.py\nprint('hello')\n=====\nprint('hi')\n```\n"


@pytest.fixture(params=["github", "gitlab", "gitea"])
def fake(request, make_source, tmp_path):
    http.forget_limits()
    source = make_source("team-app")
    bare = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    forge = FakeForge(request.param, bare).start()
    forge.required = ["ci"]  # a protected branch: every request waits for `ci`
    yield forge
    forge.stop()
    http.forget_limits()
    assert forge.problems == [], "requests or responses off the description"


@pytest.fixture
def pr_repo(fake, workspace):
    return Repository.register(
        str(fake.git_dir),
        workspace,
        name="app",
        land_via="pr",
        forge=fake.kind,
        forge_url=fake.url,
        forge_repo=fake.repo,
        forge_token=fake.token,
    )


def propose(repo, description=EDIT):
    agent = Agent.objects.create(name=f"demo-{Agent.objects.count()}", preset="demo")
    session, bead = run_bead(repo, agent, description=description)
    assert session.status == "submitted", session.error
    run_lead(repo)  # gates, builds the commit, pushes corral/<bead>, opens the request
    return Submission.objects.get(session=session)


@pytest.mark.slow
def test_a_bead_lands_once_the_forge_merges_its_request(pr_repo, fake, rq_redis):
    before = git(pr_repo.canonical_path, "rev-parse", "main")
    sub = propose(pr_repo)
    assert sub.status == "proposed" and sub.proposal_number == 1
    assert git(pr_repo.canonical_path, "rev-parse", "main") == before  # nothing landed yet
    assert fake.branch_sha(f"corral/{sub.bead_id}") == sub.proposal_sha
    assert fake.pulls[1].title.endswith(f"({sub.bead_id})")
    assert f"Bead: {sub.bead_id}" in fake.pulls[1].body
    forge_job.poll(pr_repo.pk)
    sub.refresh_from_db()
    assert sub.status == "proposed" and "checks" in sub.proposal_note
    fake.set_check(sub.proposal_sha, "ci", "success")
    forge_job.poll(pr_repo.pk)
    sub.refresh_from_db()
    assert sub.status == "committed", sub.proposal_note
    upstream_main = git(fake.git_dir, "rev-parse", "main")
    assert git(pr_repo.canonical_path, "rev-parse", "main") == upstream_main  # followed
    assert sub.commit_sha == upstream_main
    assert sub.bead.__class__.objects.get(pk=sub.bead_id).status == "closed"
    message = git(fake.git_dir, "log", "-1", "--format=%B", "main")
    assert f"Session: {sub.session_id}" in message  # one commit per bead, trailers kept
    forge_job.poll(pr_repo.pk)  # again: nothing left to do, nothing changes
    assert Submission.objects.get(pk=sub.pk).status == "committed"


@pytest.mark.slow
def test_a_request_closed_unmerged_sends_the_bead_back_with_the_reviewers_words(
    pr_repo, fake, rq_redis
):
    sub = propose(pr_repo)
    state = {"github": "CHANGES_REQUESTED", "gitea": "REQUEST_CHANGES", "gitlab": ""}[fake.kind]
    fake.review(1, "alice", "Use the greeting helper instead.", state)
    fake.close(1)
    forge_job.poll(pr_repo.pk)
    sub.refresh_from_db()
    bead = sub.bead.__class__.objects.get(pk=sub.bead_id)
    assert sub.status == "rejected" and bead.status == "open"
    assert "alice" in bead.last_failure and "greeting helper" in bead.last_failure
    # The bead's next session is told why, in its context pack.
    again = lifecycle.claim(Agent.objects.create(name="next", preset="demo"), bead=bead)
    again.queue()
    run_session(again.pk)
    again.refresh_from_db()
    assert "alice" in again.context and "Use the greeting helper instead." in again.context


@pytest.mark.slow
@pytest.mark.parametrize("fake", ["github"], indirect=True)
def test_where_github_requires_its_merge_queue_the_request_joins_it_and_lands(
    pr_repo, fake, rq_redis
):
    fake.refuse_merge = (
        "Repository rule violations found\n\nChanges must be made through the merge queue"
    )
    fake.merge_queue = True
    sub = propose(pr_repo)
    fake.set_check(sub.proposal_sha, "ci", "success")
    forge_job.poll(pr_repo.pk)  # REST's merge is refused: queued through GraphQL
    sub.refresh_from_db()
    assert sub.status == "proposed" and "In the merge queue" in sub.proposal_note
    assert fake.pulls[1].queued and ("POST", "/graphql", 200) in fake.requests
    forge_job.poll(pr_repo.pk)  # the queue merged it: Corral follows and lands it
    sub.refresh_from_db()
    assert sub.status == "committed", sub.proposal_note
    assert sub.commit_sha == git(fake.git_dir, "rev-parse", "main")


@pytest.mark.slow
def test_a_failed_forge_check_fails_the_submission_when_it_is_a_gate(pr_repo, fake, rq_redis):
    Repository.objects.filter(pk=pr_repo.pk).update(forge_checks_gate=True)
    pr_repo.refresh_from_db()
    sub = propose(pr_repo)
    fake.set_check(sub.proposal_sha, "ci", "success")
    fake.set_check(sub.proposal_sha, "unit-tests", "failure")
    forge_job.poll(pr_repo.pk)
    sub.refresh_from_db()
    gate = GateResult.objects.get(submission=sub, gate="forge")
    assert gate.passed is False and "unit-tests: failure" in gate.detail
    assert sub.status == "rejected" and "unit-tests failed" in sub.reason
    assert fake.pulls[1].state == "closed"  # told on the forge too
    assert "apply" in set(GateResult.objects.filter(submission=sub).values_list("gate", flat=True))


def poll_once(repository_id):
    forge_job.poll(repository_id)
    return Submission.objects.filter(status="committed").count()


@pytest.mark.slow
def test_polls_racing_on_a_merged_request_land_it_once(pr_repo, fake, rq_redis):
    sub = propose(pr_repo)
    fake.set_check(sub.proposal_sha, "ci", "success")
    results = race(poll_once, [(pr_repo.pk,)] * 4)
    sub.refresh_from_db()
    assert sub.status == "committed" and max(results) == 1
    assert git(fake.git_dir, "rev-list", "--count", "main") == "3"  # two seeds + one bead

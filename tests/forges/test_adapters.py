"""Each forge adapter against a fake forge that checks every request and
response against the forge's description (tests/forges/server.py)."""

import time

import pytest

from tests.factories import git
from tests.forges.server import FakeForge
from workspace import forges
from workspace.forges import base, github, http


def push_branch(upstream, tmp_path, name, files):
    """A commit on `main` pushed to the forge's branch `name`; its sha."""
    work = tmp_path / f"work-{name.replace('/', '-')}"
    git(tmp_path, "clone", "-q", str(upstream), str(work))
    for rel, text in files.items():
        (work / rel).write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", f"change for {name}\n\nBead: {name}")
    git(work, "push", "-q", "origin", f"HEAD:refs/heads/{name}")
    return git(work, "rev-parse", "HEAD")


def adapter(forge, token=None):
    return forges.adapter(forge.kind, forge.url, forge.repo, token or forge.token)


def test_opens_a_request_once_for_a_branch(forge, tmp_path):
    sha = push_branch(forge.git_dir, tmp_path, "corral/app-1", {"a.txt": "a\n"})
    first = adapter(forge).open("corral/app-1", "main", "Do it (app-1)", "body\n\nBead: app-1")
    again = adapter(forge).open("corral/app-1", "main", "Do it (app-1)", "body")
    assert (first.number, first.state, first.head_sha) == (1, base.OPEN, sha)
    assert again.number == first.number and len(forge.pulls) == 1


def test_checks_go_from_pending_to_success_and_the_rebase_merge_lands_one_commit(forge, tmp_path):
    sha = push_branch(forge.git_dir, tmp_path, "corral/app-2", {"b.txt": "b\n"})
    # Someone else lands on main meanwhile: the merge must rebase.
    push_branch(forge.git_dir, tmp_path, "main", {"other.txt": "x\n"})
    fa = adapter(forge)
    pr = fa.open("corral/app-2", "main", "B", "")
    forge.set_check(sha, "ci/test", "pending")
    assert base.summary(fa.checks(sha)) == base.PENDING
    assert not fa.merge(pr.number, sha).merged  # checks still running: the forge refuses
    forge.set_check(sha, "ci/test", "success")
    checks = fa.checks(sha)
    assert [(c.name, c.state) for c in checks] == [("ci/test", base.SUCCESS)]
    done = fa.merge(pr.number, sha)
    assert done.merged or done.queued
    got = fa.get(pr.number)
    assert got.state == base.MERGED
    log = git(forge.git_dir, "log", "--format=%s", "main").splitlines()
    assert log == ["change for corral/app-2", "change for main", "first"]  # rebased, linear


def test_a_failing_check_reads_as_failure(forge, tmp_path):
    sha = push_branch(forge.git_dir, tmp_path, "corral/app-3", {"c.txt": "c\n"})
    forge.set_check(sha, "lint", "success")
    forge.set_check(sha, "test", "failure")
    states = {c.name: c.state for c in adapter(forge).checks(sha)}
    assert states == {"lint": base.SUCCESS, "test": base.FAILURE}


def test_a_request_closed_unmerged_reads_closed_with_the_reviewers_words(forge, tmp_path):
    push_branch(forge.git_dir, tmp_path, "corral/app-4", {"d.txt": "d\n"})
    fa = adapter(forge)
    pr = fa.open("corral/app-4", "main", "D", "")
    forge.review(
        pr.number,
        "alice",
        "Please use the existing helper.",
        "CHANGES_REQUESTED"
        if forge.kind == "github"
        else ("REQUEST_CHANGES" if forge.kind == "gitea" else ""),
    )
    forge.review(pr.number, "bob", "Also add a test.")
    forge.close(pr.number)
    assert fa.get(pr.number).state == base.CLOSED
    said = [(r.author, r.body) for r in fa.remarks(pr.number)]
    assert ("alice", "Please use the existing helper.") in said
    assert ("bob", "Also add a test.") in said


def test_closing_says_why_on_the_request(forge, tmp_path):
    push_branch(forge.git_dir, tmp_path, "corral/app-5", {"e.txt": "e\n"})
    fa = adapter(forge)
    pr = fa.open("corral/app-5", "main", "E", "")
    fa.close(pr.number, "The forge's check failed: test")
    assert forge.pulls[pr.number].state == "closed"
    assert forge.pulls[pr.number].remarks[-1][1] == "The forge's check failed: test"


def test_a_short_retry_after_is_slept_once_then_the_request_goes_through(forge, tmp_path):
    push_branch(forge.git_dir, tmp_path, "corral/app-6", {"f.txt": "f\n"})
    fa = adapter(forge)
    pr = fa.open("corral/app-6", "main", "F", "")
    forge.limit_next(429, retry_after="1")
    started = time.monotonic()
    assert fa.get(pr.number).number == pr.number
    assert time.monotonic() - started >= 1.0
    assert [s for m, p, s in forge.requests if m == "GET"][-2:] == [429, 200]


def test_a_long_rate_limit_fails_fast_without_asking_again(forge, tmp_path):
    push_branch(forge.git_dir, tmp_path, "corral/app-7", {"g.txt": "g\n"})
    fa = adapter(forge)
    pr = fa.open("corral/app-7", "main", "G", "")
    forge.limit_next(403, reset=time.time() + 120)
    with pytest.raises(forges.RateLimited) as limited:
        fa.get(pr.number)
    assert 100 < limited.value.wait_s <= 120
    seen = len(forge.requests)
    with pytest.raises(forges.RateLimited):
        adapter(forge).get(pr.number)  # another client of the same host: no request at all
    assert len(forge.requests) == seen


def test_an_unchanged_request_is_read_again_with_its_etag(forge, tmp_path):
    push_branch(forge.git_dir, tmp_path, "corral/app-8", {"h.txt": "h\n"})
    fa = adapter(forge)
    pr = fa.open("corral/app-8", "main", "H", "")
    first = fa.get(pr.number)
    second = fa.get(pr.number)
    assert first == second
    statuses = [s for m, p, s in forge.requests if m == "GET" and p.endswith(f"/{pr.number}")]
    assert statuses == [200, 304]


def test_a_wrong_token_is_refused_and_never_shown(forge, tmp_path):
    push_branch(forge.git_dir, tmp_path, "corral/app-9", {"i.txt": "i\n"})
    with pytest.raises(forges.ForgeError) as refused:
        adapter(forge, token="wrong-secret-token").open("corral/app-9", "main", "I", "")
    assert refused.value.status == 401
    assert "wrong-secret-token" not in str(refused.value) + repr(adapter(forge).__dict__)


QUEUE_RULE = "Repository rule violations found\n\nChanges must be made through the merge queue"


@pytest.fixture
def github_queue(upstream):
    """A fake GitHub whose `main` requires its merge queue."""
    http.forget_limits()
    fake = FakeForge("github", upstream).start()
    fake.refuse_merge, fake.merge_queue = QUEUE_RULE, True
    yield fake
    fake.stop()
    assert fake.problems == [], "requests or responses off GitHub's descriptions"


def test_a_branch_that_requires_githubs_merge_queue_gets_the_request_queued(github_queue, tmp_path):
    sha = push_branch(github_queue.git_dir, tmp_path, "corral/app-9", {"q.txt": "q\n"})
    fa = adapter(github_queue)
    pr = fa.open("corral/app-9", "main", "Q", "")
    done = fa.merge(pr.number, sha)
    assert done.queued and not done.merged and "position 1" in done.message
    assert ("POST", "/graphql", 200) in github_queue.requests  # REST has no way to queue
    assert fa.get(pr.number).state == base.MERGED  # the queue merged it, by rebase
    assert (
        git(github_queue.git_dir, "log", "-1", "--format=%s", "main") == "change for corral/app-9"
    )


def test_queuing_a_request_twice_reads_as_queued_and_a_moved_head_is_not_queued(
    github_queue, tmp_path
):
    github_queue.set_check(
        push_branch(github_queue.git_dir, tmp_path, "corral/app-10", {"r.txt": "r\n"}),
        "ci",
        "pending",
    )
    fa = adapter(github_queue)
    pr = fa.open("corral/app-10", "main", "R", "")
    sha = fa.get(pr.number).head_sha
    assert fa.merge(pr.number, sha).queued  # queued; its check still runs, so not merged
    again = fa.merge(pr.number, sha)
    assert again.queued and "already queued" in again.message
    assert fa.get(pr.number).state == base.OPEN
    push_branch(github_queue.git_dir, tmp_path, "corral/app-11", {"s.txt": "s\n"})
    second = fa.open("corral/app-11", "main", "S", "")
    stale = fa.merge(second.number, "0" * 40)  # not the head GitHub holds: never queued
    assert not stale.queued and "modified" in stale.message
    assert not github_queue.pulls[second.number].queued


def test_githubs_graphql_endpoint_sits_beside_its_rest_root():
    assert github.graphql_root("https://api.github.com") == "https://api.github.com/graphql"
    assert github.graphql_root("https://ghe.example/api/v3/") == "https://ghe.example/api/graphql"

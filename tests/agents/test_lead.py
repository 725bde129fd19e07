"""The lead gates each submission and lands it as exactly one commit."""

import pytest

from agents import queues
from agents.jobs import lead, reconcile, revert
from agents.models import GateResult
from agents.moves import outcomes
from beads.models import Bead
from tests.factories import commits, git, land, make_patch, run_lead, submit
from workspace import gitops

pytestmark = pytest.mark.django_db(transaction=True)


def outcome(sub):
    sub.refresh_from_db()
    sub.bead.refresh_from_db()
    sub.session.refresh_from_db()
    return sub.status, sub.bead.status, sub.session.status


def gate(sub, name):
    return GateResult.objects.get(submission=sub, gate=name)


def test_a_good_submission_lands_as_one_commit_with_trailers(repo, agent, rq_redis):
    before = commits(repo)
    bead, sub = land(repo, agent, {"src/new.py": "x = 1\n"}, scope=["src/**"], title="Add x")
    run_lead(repo)
    assert outcome(sub) == ("committed", "closed", "succeeded")
    assert commits(repo) == before + 1
    sha = git(repo.canonical_path, "rev-parse", repo.branch)
    assert sub.commit_sha == sha and sub.bead.commit_sha == sha
    message = git(repo.canonical_path, "log", "-1", "--format=%B", sha)
    assert message.splitlines()[0] == f"Add x ({bead.id})"
    assert "Did the work." in message
    assert f"Bead: {bead.id}\nAgent: agent-1\nSession: {sub.session_id}" in message
    people = git(repo.canonical_path, "log", "-1", "--format=%an|%cn", sha)
    assert people == "agent-1|Corral lead"
    assert git(repo.canonical_path, "show", f"{sha}:src/new.py") == "x = 1"
    # git builds the tree first; paths, scope and size judge what it would commit.
    assert [r.gate for r in sub.gate_results.all()] == [
        "apply",
        "paths",
        "scope",
        "size",
        "check",
        "review",
    ]
    assert all(r.passed for r in sub.gate_results.all())


# Each with the gate that refuses it: git itself will not apply a path with ..
# or inside .git, nor an absolute one; a symlink it does apply is for the paths gate.
HOSTILE = {
    "dot-dot": "diff --git a/../evil b/../evil\nnew file mode 100644\n--- /dev/null\n"
    "+++ b/../evil\n@@ -0,0 +1 @@\n+x\n",
    "absolute": "diff --git a//etc/passwd b//etc/passwd\n--- a//etc/passwd\n"
    "+++ b//etc/passwd\n@@ -1 +1 @@\n-root\n+owned\n",
    "git-config": "diff --git a/.git/config b/.git/config\n--- a/.git/config\n"
    "+++ b/.git/config\n@@ -1 +1 @@\n-[core]\n+[core] hooksPath=/tmp\n",
    "symlink": "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n"
    "+++ b/link\n@@ -0,0 +1 @@\n+/etc\n\\ No newline at end of file\n",
    "symlink-climbing": "diff --git a/src/up b/src/up\nnew file mode 120000\n--- /dev/null\n"
    "+++ b/src/up\n@@ -0,0 +1 @@\n+../../..\n\\ No newline at end of file\n",
}


REFUSED_BY = {
    "dot-dot": "apply",
    "absolute": "apply",
    "git-config": "apply",
    "symlink": "paths",
    "symlink-climbing": "paths",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_paths_that_leave_the_repository_are_refused(repo, agent, rq_redis, kind):
    before = commits(repo)
    bead = Bead.objects.create(repository=repo, title="Sneaky", scope=["**"])
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    sub = submit(bead, agent, HOSTILE[kind], base)
    run_lead(repo)
    assert outcome(sub) == ("rejected", "open", "failed")
    refused_by = REFUSED_BY[kind]
    assert gate(sub, refused_by).passed is False
    assert f"{refused_by} gate" in sub.reason
    assert commits(repo) == before
    assert sub.bead.attempts == 1 and sub.bead.last_failure == sub.reason


def test_a_symlink_inside_the_repository_is_fine(repo, agent, rq_redis):
    patch = (
        "diff --git a/src/link b/src/link\nnew file mode 120000\n--- /dev/null\n"
        "+++ b/src/link\n@@ -0,0 +1 @@\n+app.py\n\\ No newline at end of file\n"
    )
    bead = Bead.objects.create(repository=repo, title="Link", scope=["src/**"])
    sub = submit(bead, agent, patch, git(repo.canonical_path, "rev-parse", repo.branch))
    run_lead(repo)
    assert outcome(sub)[0] == "committed"


def test_the_scope_gate_refuses_a_path_outside_the_beads_scope(repo, agent, rq_redis):
    _, sub = land(repo, agent, {"src/ok.py": "1\n", "README.md": "changed\n"}, scope=["src/**"])
    run_lead(repo)
    assert outcome(sub)[0] == "rejected"
    assert gate(sub, "scope").passed is False
    assert "README.md" in gate(sub, "scope").detail


def test_an_unscoped_bead_needs_the_repository_to_allow_it(repo, agent, rq_redis):
    _, refused = land(repo, agent, {"a.txt": "1\n"}, scope=[])
    run_lead(repo)
    assert outcome(refused)[0] == "rejected"
    assert "requires one" in gate(refused, "scope").detail
    repo.allow_unscoped = True
    repo.save()
    _, allowed = land(repo, agent, {"b.txt": "1\n"}, scope=[])
    run_lead(repo)
    assert outcome(allowed)[0] == "committed"


def test_the_size_gate_holds_the_agents_caps(repo, agent, rq_redis):
    agent.max_changed_files = 1
    agent.save()
    _, sub = land(repo, agent, {"a.txt": "1\n", "b.txt": "2\n"})
    run_lead(repo)
    assert outcome(sub)[0] == "rejected"
    assert "2 file(s) (cap 1)" in gate(sub, "size").detail


def test_a_patch_made_on_an_older_base_lands_when_it_does_not_overlap(repo, agent, rq_redis):
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    _, first = land(repo, agent, {"src/app.py": "print('changed')\n"}, base=base)
    _, second = land(repo, agent, {"docs/new.md": "hi\n"}, base=base)
    run_lead(repo)
    assert outcome(first)[0] == outcome(second)[0] == "committed"
    tree = git(repo.canonical_path, "ls-tree", "-r", "--name-only", repo.branch)
    assert "docs/new.md" in tree.splitlines()
    assert git(repo.canonical_path, "show", f"{repo.branch}:src/app.py") == "print('changed')"


def test_the_reused_index_is_read_again_after_the_branch_moved_outside_the_lead(
    repo, agent, rq_redis
):
    _, first = land(repo, agent, {"one.txt": "1\n"})
    run_lead(repo)
    # Someone writes to the branch outside the lead: the index kept from the
    # first landing no longer holds the head, and must not be built on.
    path, head = repo.canonical_path, git(repo.canonical_path, "rev-parse", repo.branch)
    index = gitops.PrivateIndex(path)
    with index:
        tree = index.tree_with_patch(head, make_patch(repo, {"outside.txt": "o\n"}, base=head)[1])
    moved = gitops.commit_tree(path, tree, head, "outside the lead")
    assert gitops.update_branch(path, repo.branch, moved, head)
    _, second = land(repo, agent, {"two.txt": "2\n"}, base=head)
    run_lead(repo)
    assert outcome(first)[0] == outcome(second)[0] == "committed"
    files = git(path, "ls-tree", "-r", "--name-only", repo.branch).splitlines()
    assert {"one.txt", "outside.txt", "two.txt"} <= set(files)
    assert git(path, "rev-parse", f"{repo.branch}^") == moved


def test_a_three_way_merge_lands_a_change_whose_context_moved(repo, agent, rq_redis, make_source):
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    lines = "".join(f"line {i}\n" for i in range(40))
    _, seed = land(repo, agent, {"big.txt": lines})
    run_lead(repo)
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    top = lines.replace("line 1\n", "line one\n")
    bottom = lines.replace("line 38\n", "line thirty-eight\n")
    _, first = land(repo, agent, {"big.txt": top}, base=base)
    _, second = land(repo, agent, {"big.txt": bottom}, base=base)
    run_lead(repo)
    assert outcome(seed)[0] == outcome(first)[0] == outcome(second)[0] == "committed"
    final = git(repo.canonical_path, "show", f"{repo.branch}:big.txt")
    assert "line one" in final and "line thirty-eight" in final


def test_of_two_conflicting_submissions_the_second_returns_to_the_hook(repo, agent, rq_redis):
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    _, first = land(repo, agent, {"src/app.py": "print('first')\n"}, base=base)
    _, second = land(repo, agent, {"src/app.py": "print('second')\n"}, base=base)
    before = commits(repo)
    run_lead(repo)
    assert outcome(first) == ("committed", "closed", "succeeded")
    assert outcome(second) == ("conflict", "open", "failed")
    assert "src/app.py" in gate(second, "apply").detail
    assert second.bead.attempts == 1 and "apply gate" in second.bead.last_failure
    assert commits(repo) == before + 1


def test_a_patch_that_does_not_apply_to_its_own_base_is_rejected(repo, agent, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Bad", scope=["**"])
    patch = (
        "diff --git a/src/app.py b/src/app.py\n--- a/src/app.py\n+++ b/src/app.py\n"
        "@@ -1 +1 @@\n-print('not what is there')\n+print('x')\n"
    )
    sub = submit(bead, agent, patch, git(repo.canonical_path, "rev-parse", repo.branch))
    run_lead(repo)
    assert outcome(sub)[0] == "rejected"
    assert "does not apply" in gate(sub, "apply").detail


def test_a_failing_check_rejects_and_shows_its_output(repo, agent, rq_redis):
    repo.check_command = "python3 -c \"import sys; print('3 tests failed'); sys.exit(1)\""
    repo.save()
    before = commits(repo)
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    assert outcome(sub)[:2] == ("rejected", "open")
    check = gate(sub, "check")
    assert (
        check.passed is False and "3 tests failed" in check.detail and "Exit code 1" in check.detail
    )
    assert commits(repo) == before


def test_the_check_runs_on_head_plus_the_patch(repo, agent, rq_redis):
    repo.check_command = (
        'python3 -c "import pathlib,sys; '
        "sys.exit(0 if pathlib.Path('a.txt').read_text()=='ok\\n' else 3)\""
    )
    repo.save()
    _, sub = land(repo, agent, {"a.txt": "ok\n"})
    run_lead(repo)
    assert outcome(sub)[0] == "committed"


@pytest.mark.slow
def test_a_check_that_runs_too_long_is_stopped(repo, agent, rq_redis):
    repo.check_command = 'python3 -c "import time; time.sleep(30)"'
    repo.check_timeout_s = 1
    repo.save()
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    assert outcome(sub)[0] == "rejected"
    assert "Timed out after 1s" in gate(sub, "check").detail


def test_human_review_waits_then_an_approval_lands_it(repo, agent, rq_redis, user):
    repo.review_mode = "human"
    repo.save()
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    before = commits(repo)
    run_lead(repo)
    assert outcome(sub)[:2] == ("awaiting_review", "review")
    assert gate(sub, "review").passed is None
    assert commits(repo) == before
    assert outcomes.review(sub, user, approve=True)
    assert not outcomes.review(sub, user, approve=False)  # decided already
    run_lead(repo)
    assert outcome(sub) == ("committed", "closed", "succeeded")
    assert sub.reviewed_by == user
    assert "Approved by alice" in gate(sub, "review").detail
    assert commits(repo) == before + 1


def test_human_rejection_returns_the_bead(repo, agent, rq_redis, user):
    repo.review_mode = "human"
    repo.save()
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    assert outcomes.review(sub, user, approve=False, reason="Wrong approach")
    assert outcome(sub) == ("rejected", "open", "failed")
    assert sub.bead.last_failure == "Wrong approach"


def test_three_failed_attempts_block_the_bead(repo, agent, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Hard", scope=["src/**"])
    for _ in range(3):
        base, patch = make_patch(repo, {"outside.txt": "x\n"})
        submit(bead, agent, patch, base)
        run_lead(repo)
        bead.refresh_from_db()
    assert bead.status == "blocked" and bead.attempts == 3
    assert "Blocked after 3 failed attempts" in bead.last_failure


def test_a_lead_that_died_after_update_ref_does_not_commit_twice(repo, agent, rq_redis):
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    # The first lead committed, then died before saving its row.
    landing = lead.Landing(sub)
    landing.head = git(repo.canonical_path, "rev-parse", repo.branch)
    landing.tree = gitops.apply_patch(
        repo.canonical_path, sub.session.base_sha, landing.head, sub.session.patch
    )
    sha = gitops.commit_tree(repo.canonical_path, landing.tree, landing.head, landing.message())
    assert gitops.update_branch(repo.canonical_path, repo.branch, sha, landing.head)
    sub.start_checking()
    before = commits(repo)
    lead.drain(repo.pk)
    lead.drain(repo.pk)
    assert outcome(sub)[0] == "committed"
    assert sub.commit_sha == sha
    assert commits(repo) == before


def test_revert_lands_one_commit_and_reopens_the_bead(repo, agent, rq_redis):
    bead, sub = land(repo, agent, {"src/app.py": "print('new')\n"}, title="Change app")
    run_lead(repo)
    bead.refresh_from_db()
    landed = bead.commit_sha
    _, later = land(repo, agent, {"other.txt": "1\n"})
    run_lead(repo)
    before = commits(repo)
    outcomes.request_bead_revert(bead)
    outcomes.request_bead_revert(bead)
    run_lead(repo)
    revert.revert(bead.pk)
    bead.refresh_from_db()
    assert bead.status == "open" and bead.commit_sha == ""
    assert commits(repo) == before + 1
    message = git(repo.canonical_path, "log", "-1", "--format=%B", repo.branch)
    assert message.startswith(f'Revert "Change app" ({bead.id})')
    assert f"Reverts: {landed}" in message
    assert git(repo.canonical_path, "show", f"{repo.branch}:src/app.py") == "print('hello')"
    assert git(repo.canonical_path, "show", f"{repo.branch}:other.txt") == "1"


def test_push_fast_forwards_the_upstream(repo, agent, rq_redis, tmp_path):
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo.canonical_path), str(upstream))
    repo.push, repo.upstream = True, str(upstream)
    repo.save()
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    sub.refresh_from_db()
    assert git(upstream, "rev-parse", repo.branch) == sub.commit_sha
    assert sub.pushed_at is not None and sub.push_error == ""


def test_a_push_onto_an_upstream_that_moved_lands_on_it_never_forced(
    repo, agent, rq_redis, tmp_path
):
    upstream = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo.canonical_path), str(upstream))
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", str(upstream), str(other))
    (other / "theirs.txt").write_text("theirs\n")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "someone else's")
    git(other, "push", "-q", "origin", "HEAD")
    theirs = git(upstream, "rev-parse", repo.branch)
    repo.push, repo.upstream = True, str(upstream)
    repo.save()
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "committed" and sub.pushed_at is not None
    # Fetched before the train: the bead's commit sits on theirs, theirs kept.
    assert git(upstream, "rev-parse", repo.branch) == sub.commit_sha
    assert git(upstream, "rev-parse", f"{sub.commit_sha}^") == theirs


def test_a_push_to_an_unreachable_upstream_is_recorded_and_tried_again(
    repo, agent, rq_redis, tmp_path
):
    repo.push, repo.upstream = True, str(tmp_path / "gone.git")
    repo.save()
    _, sub = land(repo, agent, {"a.txt": "1\n"})
    run_lead(repo)
    sub.refresh_from_db()
    repo.refresh_from_db()
    assert sub.status == "committed" and sub.pushed_at is None
    assert repo.push_ok is False and "gone.git" in repo.push_message
    assert reconcile.retry_pushes() == 1  # the supervisor will try again
    assert queues.lead_queue(repo).fetch_job(f"push-{repo.slug}") is not None

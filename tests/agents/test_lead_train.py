"""The lead lands queued submissions as a train: one commit per bead, one
compare-and-swap of the branch for all of them."""

from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.jobs import lead
from agents.models import Submission
from tests.factories import git, land, make_patch, run_lead
from workspace import gitops

pytestmark = pytest.mark.django_db(transaction=True)


def status(sub):
    sub.refresh_from_db()
    return sub.status


def branch_log(repo, since):
    """[(sha, parent, bead trailer)] of the branch's commits after `since`, oldest first."""
    out = git(
        repo.canonical_path,
        "log",
        "--reverse",
        "--format=%H %P %(trailers:key=Bead,valueonly,separator=)",
        f"{since}..{repo.branch}",
    )
    return [tuple(line.split(" ")) for line in out.splitlines()]


def queue_several(repo, agent, n, base):
    return [land(repo, agent, {f"f{i}.txt": f"{i}\n"}, base=base)[1] for i in range(n)]


@pytest.mark.slow
def test_a_train_lands_one_commit_per_bead_with_one_move_of_the_branch(repo, agent, rq_redis):
    path = repo.canonical_path
    git(path, "config", "core.logAllRefUpdates", "always")  # every move of the branch is logged
    base = git(path, "rev-parse", repo.branch)
    subs = queue_several(repo, agent, 5, base)
    run_lead(repo)
    assert [status(sub) for sub in subs] == ["committed"] * 5
    landed = branch_log(repo, base)
    # Consecutive commits, each on the one before, in the order they were queued.
    assert [parent for _, parent, _ in landed] == [base] + [sha for sha, _, _ in landed[:-1]]
    assert [bead for _, _, bead in landed] == [sub.bead_id for sub in subs]
    assert [sha for sha, _, _ in landed] == [sub.commit_sha for sub in subs]
    for i, (sha, _, _) in enumerate(landed):
        changed = git(path, "show", "--format=", "--name-only", sha).split()
        assert changed == [f"f{i}.txt"]
    moves = git(path, "reflog", "show", "--format=%H", f"refs/heads/{repo.branch}").split()
    assert moves == [landed[-1][0]]  # one compare-and-swap for the five
    started = {sub.started_at for sub in Submission.objects.all()}
    assert len(started) == 1  # one train


def test_a_refused_member_drops_out_and_the_others_land(repo, agent, rq_redis):
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    _, first = land(repo, agent, {"a/one.txt": "1\n"}, scope=["a/**"], base=base)
    _, outside = land(repo, agent, {"elsewhere.txt": "x\n"}, scope=["a/**"], base=base)
    _, conflict = land(repo, agent, {"a/one.txt": "other\n"}, scope=["a/**"], base=base)
    _, last = land(repo, agent, {"a/two.txt": "2\n"}, scope=["a/**"], base=base)
    run_lead(repo)
    assert status(outside) == "rejected"
    assert status(conflict) == "conflict"
    assert status(first) == status(last) == "committed"
    landed = branch_log(repo, base)
    assert [bead for _, _, bead in landed] == [first.bead_id, last.bead_id]
    assert landed[1][1] == landed[0][0]
    # The refused members' gates are on record; the landed ones' with their rows.
    assert outside.gate_results.get(gate="scope").passed is False
    assert [r.gate for r in last.gate_results.all()][:2] == ["apply", "paths"]


@pytest.mark.slow
def test_when_the_branch_cannot_be_moved_no_member_of_the_train_lands(repo, agent, rq_redis):
    path = repo.canonical_path
    base = git(path, "rev-parse", repo.branch)
    subs = queue_several(repo, agent, 3, base)
    lock = Path(path, "refs", "heads", f"{repo.branch}.lock")
    lock.write_text("")  # another writer holds the branch's ref: every compare-and-swap fails
    try:
        run_lead(repo)
    finally:
        lock.unlink()
    assert git(path, "rev-parse", repo.branch) == base
    assert [status(sub) for sub in subs] == ["failed"] * 3
    assert all("kept moving" in sub.reason for sub in subs)
    assert not Submission.objects.filter(commit_sha__gt="").exists()


@pytest.mark.slow
def test_a_train_whose_branch_moved_is_built_again_on_the_new_head(repo, agent, rq_redis):
    path = repo.canonical_path
    base = git(path, "rev-parse", repo.branch)
    subs = queue_several(repo, agent, 3, base)
    # A lead built the train's commits, then lost the race for the branch to a
    # writer outside Corral: the members are still being checked and none of
    # the train's commits is on the branch.
    started = timezone.now()
    landings = lead.board_train(subs, started)
    tip = base
    for landing in landings:
        tip = landing.board(tip)
    orphans = {landing.sha for landing in landings}
    with gitops.PrivateIndex(path) as index:
        tree = index.tree_with_patch(base, make_patch(repo, {"outside.txt": "o\n"})[1])
    moved = gitops.commit_tree(path, tree, base, "outside Corral")
    assert gitops.update_branch(path, repo.branch, moved, base)
    assert not gitops.update_branch(path, repo.branch, tip, base)  # the train's swap fails
    run_lead(repo)  # the members, resumed, are gated and committed again on the new head
    assert [status(sub) for sub in subs] == ["committed"] * 3
    landed = branch_log(repo, base)
    assert [sha for sha, _, _ in landed][0] == moved
    assert [b for _, _, b in landed[1:]] == [sub.bead_id for sub in subs]
    assert landed[1][1] == moved
    assert not orphans & {sha for sha, _, _ in landed}
    files = git(path, "ls-tree", "-r", "--name-only", repo.branch).split()
    assert {"outside.txt", "f0.txt", "f1.txt", "f2.txt"} <= set(files)


MESSAGES = [
    "T\n\nbody\n---\nFoo: bar\n\nBead: x\nAgent: y\n",
    "T\n\nbody\n\nBead: x\nAgent: y\n---\nZ: q\n",
    "T\n\nSigned-off-by: a\n\nBead: x\n Agent: folded\n continued\n",
    "T\n\n(cherry picked from commit abc)\nBead: x\n",
    "T\n\nno trailers here\n",
]


def test_the_train_reads_trailers_as_interpret_trailers_does(repo):
    path = repo.canonical_path
    head = git(path, "rev-parse", repo.branch)
    tree = git(path, "rev-parse", f"{head}^{{tree}}")
    shas = [gitops.commit_tree(path, tree, head, message) for message in MESSAGES]
    read = gitops.trailers_of_commits(path, shas)
    assert [read[sha] for sha in shas] == [gitops.trailers_of(path, m) for m in MESSAGES]
    assert read[shas[0]] == [("Bead", "x"), ("Agent", "y")]


def test_a_member_whose_commit_carries_a_trailer_that_is_not_corrals_is_found(
    repo, agent, rq_redis
):
    path = repo.canonical_path
    base = git(path, "rev-parse", repo.branch)
    [sub] = queue_several(repo, agent, 1, base)
    [landing] = lead.board_train([sub], timezone.now())
    assert landing.board(base)
    assert lead.foreign_trailers(repo, [landing]) == []
    tree = git(path, "rev-parse", f"{landing.sha}^{{tree}}")
    landing.sha = gitops.commit_tree(path, tree, base, landing.message() + "Reverts: abc\n")
    assert lead.foreign_trailers(repo, [landing]) == [landing]


def test_when_git_fails_under_the_train_its_members_are_refused_not_left_checking(
    repo, agent, rq_redis
):
    path = repo.canonical_path
    base = git(path, "rev-parse", repo.branch)
    subs = queue_several(repo, agent, 2, base)
    git(path, "update-ref", "-d", f"refs/heads/{repo.branch}")  # the branch is gone
    run_lead(repo)
    assert [status(sub) for sub in subs] == ["failed"] * 2
    assert all("has no commits" in sub.reason for sub in subs)


def queries_to_land(repo, subs):
    """How many queries the lead makes to land `subs` as one train."""
    with CaptureQueriesContext(connection) as queries:
        lead.land_train(repo, list(lead.waiting(repo).filter(pk__in=[s.pk for s in subs])))
    assert [status(sub) for sub in subs] == ["committed"] * len(subs)
    return len(queries)


@pytest.mark.slow
def test_a_train_makes_as_many_queries_for_five_members_as_for_two(repo, agent, rq_redis):
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    subs = queue_several(repo, agent, 7, base)
    assert queries_to_land(repo, subs[:2]) == queries_to_land(repo, subs[2:])

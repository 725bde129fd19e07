"""Living with the team's remote: the lead follows the upstream (before each
train and on a schedule), pushes with a lease and rebuilds on a rejection,
and stops when the upstream's history was rewritten until an operator
rebuilds. Real git throughout: a bare "upstream" in a temp folder, and a
person's clone that pushes to it."""

from pathlib import Path

import pytest

from agents import queues
from agents.jobs import lead, reconcile, upstream
from agents.models import Submission
from beads.models import Bead
from tests.factories import git, land, run_lead
from tests.races import race
from workspace import gitops
from workspace.audit import AuditEntry
from workspace.models import Repository

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bare_upstream(make_source, tmp_path):
    """A bare upstream repository that logs every update of its refs."""
    source = make_source("team")
    bare = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    git(bare, "config", "core.logAllRefUpdates", "always")
    return bare


@pytest.fixture
def person(bare_upstream, tmp_path):
    """A person's clone of the upstream; person.commit(name) pushes one commit."""
    return Person(bare_upstream, tmp_path / "person")


class Person:
    def __init__(self, upstream, path):
        self.upstream, self.path = upstream, path
        git(path.parent, "clone", "-q", str(upstream), str(path))

    def commit(self, name, text="by a person\n", push=True):
        git(self.path, "pull", "-q", "--rebase", "origin", "main")
        Path(self.path, name).write_text(text)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", f"person: {name}")
        if push:
            git(self.path, "push", "-q", "origin", "HEAD:main")
        return git(self.path, "rev-parse", "HEAD")

    def rewrite(self):
        """Force-push a rewritten history: the upstream's last commit replaced."""
        git(self.path, "fetch", "-q", "origin")
        git(self.path, "reset", "-q", "--hard", "origin/main~1")
        Path(self.path, "rewritten.txt").write_text("history rewritten\n")
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "-m", "person: rewritten")
        git(self.path, "push", "-q", "--force", "origin", "HEAD:main")
        return git(self.path, "rev-parse", "HEAD")


@pytest.fixture
def team_repo(bare_upstream, workspace):
    return Repository.register(str(bare_upstream), workspace, name="team")


def upstream_head(bare):
    return git(bare, "rev-parse", "main")


def upstream_subjects(bare):
    return git(bare, "log", "--format=%s", "main").splitlines()


def upstream_beads(bare):
    out = git(bare, "log", "--format=%(trailers:key=Bead,valueonly,separator=)", "main")
    return [line for line in out.splitlines() if line]


def forced_updates(bare):
    """Entries of the upstream's reflog whose new commit does not descend from the old."""
    out = git(bare, "reflog", "show", "--format=%H", "refs/heads/main").split()
    return [
        (new, old)
        for new, old in zip(out, out[1:], strict=False)
        if gitops.git_call(bare, "merge-base", "--is-ancestor", old, new).returncode != 0
    ]


def test_a_repository_registered_from_a_path_pushes_by_default(team_repo, bare_upstream):
    assert team_repo.push and team_repo.follows_upstream
    assert team_repo.upstream_sha == upstream_head(bare_upstream)
    assert team_repo.landing == "following"


@pytest.mark.slow
def test_the_lead_fetches_the_upstream_before_a_train_and_lands_on_its_head(
    team_repo, bare_upstream, person, agent, rq_redis
):
    base = upstream_head(bare_upstream)
    _, sub = land(team_repo, agent, {"mine.txt": "bead\n"}, base=base)
    theirs = person.commit("theirs.txt")  # after the agent started, before the lead runs
    run_lead(team_repo)
    sub.refresh_from_db()
    assert sub.status == "committed"
    # The bead's commit sits on the person's: fetched before the train, not pushed over.
    assert gitops.parent_of(team_repo.canonical_path, sub.commit_sha) == theirs
    assert upstream_head(bare_upstream) == sub.commit_sha
    assert gitops.head_sha(team_repo.canonical_path, "main") == sub.commit_sha
    assert forced_updates(bare_upstream) == []
    sub.refresh_from_db()
    assert sub.pushed_at is not None
    team_repo.refresh_from_db()
    assert (team_repo.push_ok, team_repo.upstream_sha) == (True, sub.commit_sha)


def test_a_scheduled_follow_fast_forwards_the_branch_to_the_upstream(
    team_repo, bare_upstream, person, rq_redis
):
    theirs = person.commit("theirs.txt")
    assert upstream.enqueue_follows() == 1  # what the lead supervisor asks every so often
    run_lead(team_repo)
    assert gitops.head_sha(team_repo.canonical_path, "main") == theirs
    team_repo.refresh_from_db()
    assert team_repo.upstream_sha == theirs and team_repo.fetched_at is not None


def test_the_schedule_leaves_out_repositories_that_do_not_push(make_repo, rq_redis):
    make_repo("solo")  # push off: Corral's branch is its own
    assert upstream.enqueue_follows() == 0


def test_a_push_with_a_lease_never_overwrites_what_the_upstream_holds(
    team_repo, bare_upstream, person
):
    path = team_repo.canonical_path
    expected = team_repo.upstream_sha
    theirs = person.commit("theirs.txt")  # the upstream moved since Corral looked
    mine = gitops.commit_tree(path, gitops.tree_of(path, expected), expected, "mine")
    with pytest.raises(gitops.PushRejected):
        gitops.push_with_lease(path, str(bare_upstream), "main", mine, expected)
    assert upstream_head(bare_upstream) == theirs
    # Nor is a commit that does not descend from the lease ever pushed.
    gitops.fetch_branch(path, str(bare_upstream), "main")
    stray = gitops.commit_tree(path, gitops.tree_of(path, expected), expected, "stray")
    with pytest.raises(gitops.GitError, match="does not descend"):
        gitops.push_with_lease(path, str(bare_upstream), "main", stray, theirs)
    assert upstream_head(bare_upstream) == theirs and forced_updates(bare_upstream) == []


def test_an_upstream_that_refuses_every_push_lets_the_train_land_here_and_says_why(
    make_source, workspace, agent, rq_redis
):
    """A working clone with its branch checked out refuses pushes to it ("remote
    rejected"): pushing again would not change that, so the train lands on
    Corral's branch at once and the repository shows the refusal."""
    source = make_source("checked-out")
    repo = Repository.register(str(source), workspace, name="checked-out")
    assert repo.follows_upstream
    before = git(source, "rev-parse", "main")
    bead, sub = land(repo, agent, {"docs/new.md": "new\n"})
    run_lead(repo)
    sub.refresh_from_db()
    repo.refresh_from_db()
    assert sub.status == Submission.Status.COMMITTED, sub.reason
    assert gitops.head_sha(repo.canonical_path, "main") == sub.commit_sha
    assert git(source, "rev-parse", "main") == before
    assert not repo.push_ok and "checked out" in repo.push_message


def test_a_rejected_push_rebuilds_unpushed_commits_on_the_new_head_once_each(
    team_repo, bare_upstream, person, agent, rq_redis
):
    """Landed while the upstream could not be reached, then a person pushed:
    the push is refused, the commits are made again on the person's, one each,
    trailers kept, and pushed."""
    real = team_repo.upstream
    Repository.objects.filter(pk=team_repo.pk).update(upstream=str(Path(real).parent / "gone.git"))
    team_repo.refresh_from_db()
    subs = [land(team_repo, agent, {f"f{i}.txt": f"{i}\n"})[1] for i in range(3)]
    run_lead(team_repo)
    team_repo.refresh_from_db()
    assert team_repo.push_ok is False and team_repo.push_failures >= 1
    assert [sub.bead_id for sub in subs] == upstream_beads_local(team_repo)[::-1]
    Repository.objects.filter(pk=team_repo.pk).update(upstream=real)
    team_repo.refresh_from_db()
    # The person pushes first; Corral's push (its lease on what it last saw) is refused.
    theirs = person.commit("theirs.txt")
    assert upstream.publish(team_repo) is True
    beads = upstream_beads(bare_upstream)
    assert sorted(beads) == sorted(sub.bead_id for sub in subs) and len(set(beads)) == 3
    assert "person: theirs.txt" in upstream_subjects(bare_upstream)
    assert gitops.is_ancestor(bare_upstream, theirs, upstream_head(bare_upstream))
    assert forced_updates(bare_upstream) == []
    # Each submission and bead names its commit as it is on the upstream now.
    for sub in subs:
        sub.refresh_from_db()
        commit_beads = git(
            bare_upstream, "log", "-1", "--format=%(trailers:key=Bead,valueonly)", sub.commit_sha
        )
        assert commit_beads.strip() == sub.bead_id
        assert Bead.objects.get(pk=sub.bead_id).commit_sha == sub.commit_sha
        assert sub.pushed_at is not None
    assert gitops.head_sha(team_repo.canonical_path, "main") == upstream_head(bare_upstream)
    team_repo.refresh_from_db()
    assert (team_repo.push_ok, team_repo.push_failures) == (True, 0)


def upstream_beads_local(repo):
    out = git(
        repo.canonical_path, "log", "--format=%(trailers:key=Bead,valueonly,separator=)", "main"
    )
    return [line for line in out.splitlines() if line]


def test_an_unpushed_commit_that_no_longer_applies_goes_back_to_the_hook(
    team_repo, bare_upstream, person, agent, rq_redis
):
    real = team_repo.upstream
    Repository.objects.filter(pk=team_repo.pk).update(upstream=str(Path(real).parent / "gone.git"))
    team_repo.refresh_from_db()
    bead, sub = land(team_repo, agent, {"README.md": "# ours\n"})
    run_lead(team_repo)
    sub.refresh_from_db()
    assert sub.status == "committed"
    Repository.objects.filter(pk=team_repo.pk).update(upstream=real)
    team_repo.refresh_from_db()
    person.commit("README.md", "# theirs\n")
    assert upstream.publish(team_repo) is True
    sub.refresh_from_db()
    bead.refresh_from_db()
    assert sub.status == "conflict" and "no longer applies" in sub.reason
    assert (bead.status, bead.commit_sha) == ("open", "")
    assert "README.md" in bead.last_failure
    assert upstream_beads(bare_upstream) == []  # nothing of it reached the upstream


def diverge(team_repo, bare_upstream, person, agent):
    """Corral lands a bead it cannot push; a person rewrites the upstream."""
    real = team_repo.upstream
    Repository.objects.filter(pk=team_repo.pk).update(upstream=str(Path(real).parent / "gone.git"))
    team_repo.refresh_from_db()
    _, sub = land(team_repo, agent, {"mine.txt": "bead\n"})
    run_lead(team_repo)
    sub.refresh_from_db()
    Repository.objects.filter(pk=team_repo.pk).update(upstream=real)
    person.commit("pushed.txt")  # a commit Corral sees ...
    team_repo.refresh_from_db()
    upstream.follow(team_repo)  # (rebuilds ours on it: still not pushed)
    Repository.objects.filter(pk=team_repo.pk).update(upstream=str(Path(real).parent / "gone.git"))
    rewritten = person.rewrite()  # ... then rewritten away
    Repository.objects.filter(pk=team_repo.pk).update(upstream=real)
    team_repo.refresh_from_db()
    sub.refresh_from_db()
    return sub, rewritten


def test_a_rewritten_upstream_stops_landing_and_keeps_corrals_commits(
    team_repo, bare_upstream, person, agent, rq_redis, logged_in
):
    sub, rewritten = diverge(team_repo, bare_upstream, person, agent)
    ours = gitops.head_sha(team_repo.canonical_path, "main")
    assert upstream.follow(team_repo) is False
    team_repo.refresh_from_db()
    assert team_repo.landing == "diverged"
    assert team_repo.diverged_ref.startswith("refs/corral/diverged/")
    kept = git(team_repo.canonical_path, "rev-parse", team_repo.diverged_ref)
    assert kept == ours and sub.commit_sha == ours  # nothing of Corral's lost
    assert upstream_head(bare_upstream) == rewritten  # and nothing pushed over the person
    assert [new for new, _ in forced_updates(bare_upstream)] == [rewritten]
    # A submission waiting meanwhile does not land.
    _, waiting = land(team_repo, agent, {"later.txt": "later\n"})
    run_lead(team_repo)
    waiting.refresh_from_db()
    assert waiting.status == "queued"
    page = logged_in.get(f"/repos/{team_repo.slug}/").content.decode()
    assert "history was rewritten" in page and "Rebuild on the upstream" in page
    problems = logged_in.get("/problems/").content.decode()
    assert "history was rewritten" in problems


def test_rebuilding_on_the_upstream_lands_corrals_commits_there_and_resumes(
    team_repo, bare_upstream, person, agent, rq_redis, logged_in
):
    sub, rewritten = diverge(team_repo, bare_upstream, person, agent)
    upstream.follow(team_repo)
    _, waiting = land(team_repo, agent, {"later.txt": "later\n"})
    response = logged_in.post(f"/repos/{team_repo.slug}/upstream/rebuild/")
    assert response.status_code == 302
    run_lead(team_repo)
    team_repo.refresh_from_db()
    assert team_repo.landing == "following"
    beads = upstream_beads(bare_upstream)
    sub.refresh_from_db()
    waiting.refresh_from_db()
    assert sorted(beads) == sorted([sub.bead_id, waiting.bead_id])
    assert gitops.is_ancestor(bare_upstream, rewritten, upstream_head(bare_upstream))
    assert (
        git(
            bare_upstream, "show", "-s", "--format=%(trailers:key=Bead,valueonly)", sub.commit_sha
        ).strip()
        == sub.bead_id
    )
    assert [new for new, _ in forced_updates(bare_upstream)] == [rewritten]  # the person's only
    assert gitops.head_sha(team_repo.canonical_path, "main") == upstream_head(bare_upstream)
    assert git(team_repo.canonical_path, "rev-parse", team_repo.diverged_ref)  # still kept
    entry = team_repo_audit(team_repo, "upstream_rebuild")
    assert entry.actor.username == "alice"


def team_repo_audit(repo, action):
    return AuditEntry.objects.filter(repository=repo, action=action).get()


def test_a_viewer_may_not_rebuild_nor_turn_push_off(team_repo, client, viewer):
    client.force_login(viewer)
    assert client.post(f"/repos/{team_repo.slug}/upstream/rebuild/").status_code == 403
    assert client.post(f"/repos/{team_repo.slug}/push/off/").status_code == 403
    team_repo.refresh_from_db()
    assert team_repo.push


def test_an_operator_turns_push_off_and_on_and_it_is_audited(team_repo, logged_in, rq_redis):
    assert logged_in.post(f"/repos/{team_repo.slug}/push/off/").status_code == 302
    team_repo.refresh_from_db()
    assert not team_repo.push
    assert logged_in.post(f"/repos/{team_repo.slug}/push/on/").status_code == 302
    team_repo.refresh_from_db()
    assert team_repo.push
    assert team_repo_audit(team_repo, "push_off") and team_repo_audit(team_repo, "push_on")


def test_the_last_push_shows_on_the_repository_and_lead_pages(team_repo, logged_in):
    team_repo.record_push(False, "cannot push to x: unreachable")
    team_repo.record_push(False, "cannot push to x: unreachable")
    team_repo.record_push(False, "cannot push to x: unreachable")
    for url in (f"/repos/{team_repo.slug}/", f"/repos/{team_repo.slug}/lead/"):
        page = logged_in.get(url).content.decode()
        assert "unreachable" in page, url
    assert "keep failing" in logged_in.get("/problems/").content.decode()


def rebuild_once(repository_id):
    return Repository.objects.get(pk=repository_id).ask_rebuild()


def diverge_once(repository_id):
    return Repository.objects.get(pk=repository_id).diverge("refs/corral/diverged/x")


def test_of_processes_racing_to_stop_or_rebuild_a_repository_exactly_one_wins(team_repo):
    assert race(diverge_once, [(team_repo.pk,)] * 6).count(True) == 1
    assert race(rebuild_once, [(team_repo.pk,)] * 6).count(True) == 1
    team_repo.refresh_from_db()
    assert team_repo.landing == "rebuilding"


def test_a_rebuild_whose_job_vanished_is_queued_again(team_repo, rq_redis):
    Repository.objects.filter(pk=team_repo.pk).update(landing="rebuilding")
    assert [r.pk for r in reconcile.rebuilds_lost()] == [team_repo.pk]
    queues.enqueue_rebuild(team_repo)
    assert reconcile.rebuilds_lost() == []


def test_submissions_are_marked_pushed_only_once_the_upstream_has_them(
    team_repo, bare_upstream, agent, rq_redis
):
    _, sub = land(team_repo, agent, {"a.txt": "a\n"})
    run_lead(team_repo)
    sub.refresh_from_db()
    assert sub.pushed_at is not None
    assert Submission.objects.filter(pushed_at=None, status="committed").count() == 0
    assert upstream_beads(bare_upstream) == [sub.bead_id]


def test_a_push_refused_mid_train_builds_the_train_again_on_the_upstreams_head(
    team_repo, bare_upstream, person, agent, rq_redis
):
    """A person pushes between the lead's look and its push: the train's push is
    refused, the lead follows (what it fetches kept out of the train's
    quarantine) and builds the train again on the person's commit."""
    subs = [land(team_repo, agent, {f"t{i}.txt": f"{i}\n"})[1] for i in range(2)]
    theirs = person.commit("theirs.txt")
    lead.land_train(team_repo, list(lead.waiting(team_repo)))  # no look before: as in a race
    for sub in subs:
        sub.refresh_from_db()
        assert sub.status == "committed", sub.reason
    path = team_repo.canonical_path
    assert gitops.parent_of(path, subs[0].commit_sha) == theirs
    assert upstream_head(bare_upstream) == subs[-1].commit_sha
    assert git(path, "fsck", "--no-dangling", "--connectivity-only") == ""  # nothing lost
    assert gitops.head_sha(path, "main") == subs[-1].commit_sha
    assert forced_updates(bare_upstream) == []

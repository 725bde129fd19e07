import re
import shutil
import subprocess
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from agents.models import Agent, ChangeSet
from beads.models import Bead, Dependency
from corral.demo import DEMO_DIR
from tests.factories import git
from workspace.models import Repository, Workspace

DEMO_SLUGS = {"demo-api", "demo-web", "demo-infra"}
TOKEN = re.compile(r"\b(demo-\d)\s+(crl_[A-Za-z0-9_-]+)")


@pytest.fixture(autouse=True)
def corral_home(settings, tmp_path):
    settings.CORRAL_HOME = tmp_path / "home"
    return settings.CORRAL_HOME


def run_demo():
    out = StringIO()
    call_command("demo", stdout=out)
    return out.getvalue()


def counts():
    return (
        Repository.objects.count(),
        Bead.objects.count(),
        Dependency.objects.count(),
        Agent.objects.count(),
    )


@pytest.fixture
def seeded(db):
    return run_demo()


@pytest.mark.django_db
def test_creates_three_repositories_with_history(seeded, settings):
    repos = Repository.objects.filter(slug__in=DEMO_SLUGS)
    assert {r.slug for r in repos} == DEMO_SLUGS
    for repo in repos:
        assert repo.workspace == Workspace.default()
        assert repo.canonical_path.is_dir()
        assert repo.canonical_path.is_relative_to(settings.REPOS_DIR)
        assert git(repo.canonical_path, "rev-parse", "--is-bare-repository") == "true"
        commits = git(repo.canonical_path, "rev-list", "--count", f"refs/heads/{repo.branch}")
        assert 3 <= int(commits) <= 5
        authors = git(repo.canonical_path, "log", "--format=%an <%ae>").splitlines()
        assert all("@" in a for a in authors)
        assert repo.upstream == str(settings.CORRAL_HOME / "demo-src" / repo.slug)
        assert repo.check_command
        assert repo.name in seeded


@pytest.mark.django_db
def test_check_commands_pass_in_a_fresh_clone(seeded, tmp_path):
    for repo in Repository.objects.filter(slug__in=DEMO_SLUGS):
        checkout = tmp_path / "checkouts" / repo.slug
        subprocess.run(
            ["git", "clone", "-q", str(repo.canonical_path), str(checkout)],
            check=True,
            capture_output=True,
        )
        done = subprocess.run(
            repo.check_argv(), cwd=checkout, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{repo.slug}: {done.stdout}{done.stderr}"


@pytest.mark.django_db
def test_beads_statuses_and_dependencies(seeded):
    beads = list(Bead.objects.select_related("repository"))
    # Every line of demo/beads.jsonl is a bead.
    assert len(beads) == len((DEMO_DIR / "beads.jsonl").read_text().splitlines())
    for bead in beads:
        assert bead.id.startswith(bead.repository.bead_prefix + "-")
        assert bead.title and bead.description
    assert {b.repository.bead_prefix for b in beads} == {"api", "web", "infra"}
    assert {b.priority for b in beads} == {0, 1, 2, 3, 4}
    assert {b.issue_type for b in beads} == set(Bead.Type.values)
    statuses = {b.status for b in beads}
    assert {Bead.Status.OPEN, Bead.Status.CLOSED, Bead.Status.DEFERRED} <= statuses
    assert any(b.labels for b in beads)
    assert any("/**" in pattern for b in beads for pattern in b.scope)
    assert any("README.md" in b.scope for b in beads)

    blocks = Dependency.objects.filter(type=Dependency.Type.BLOCKS).select_related(
        "issue", "depends_on"
    )
    across = [d for d in blocks if d.issue.repository_id != d.depends_on.repository_id]
    assert across, "no blocks dependency across repositories"
    children = Dependency.objects.filter(type=Dependency.Type.PARENT_CHILD)
    assert children.exists()
    assert all(d.depends_on.issue_type == Bead.Type.EPIC for d in children)


@pytest.mark.django_db
def test_closed_beads_record_the_commit_that_did_the_work(seeded):
    closed = Bead.objects.filter(status=Bead.Status.CLOSED)
    assert closed.exists()
    for bead in closed:
        assert bead.closed_at and bead.closed_at > bead.created_at
        repo = bead.repository
        kind = git(repo.canonical_path, "cat-file", "-t", bead.commit_sha)
        assert kind == "commit"
        branch = f"refs/heads/{repo.branch}"
        git(repo.canonical_path, "merge-base", "--is-ancestor", bead.commit_sha, branch)


@pytest.mark.django_db
def test_no_blocks_cycle(seeded):
    edges = {}
    for issue, depends_on in Dependency.objects.filter(type=Dependency.Type.BLOCKS).values_list(
        "issue_id", "depends_on_id"
    ):
        edges.setdefault(issue, []).append(depends_on)
    done, visiting = set(), set()

    def visit(node):
        assert node not in visiting, f"cycle through {node}"
        if node in done:
            return
        visiting.add(node)
        for nxt in edges.get(node, []):
            visit(nxt)
        visiting.discard(node)
        done.add(node)

    for node in list(edges):
        visit(node)


@pytest.mark.django_db
def test_agents_and_their_printed_tokens(seeded):
    agents = Agent.objects.filter(name__in=["demo-1", "demo-2"])
    assert agents.count() == 2
    assert all(a.preset == "demo" and a.internal and a.command for a in agents)
    tokens = dict(TOKEN.findall(seeded))
    assert set(tokens) == {"demo-1", "demo-2"}
    for name, token in tokens.items():
        assert Agent.objects.authenticate(token).name == name


@pytest.mark.django_db
def test_every_demo_bead_says_the_demo_filed_it(seeded):
    assert {(bead.origin, bead.filer()) for bead in Bead.objects.all()} == {("demo", "the demo")}


@pytest.mark.django_db
def test_summary(seeded):
    assert "demo-api" in seeded and "demo-web" in seeded and "demo-infra" in seeded
    assert f"{Bead.objects.count()} beads" in seeded


@pytest.mark.django_db
def test_second_run_changes_nothing(seeded, settings):
    before = counts()
    sources = sorted(p.name for p in (settings.CORRAL_HOME / "demo-src").iterdir())
    out = run_demo()
    assert "already there" in out
    assert "nothing changed" in out
    assert not TOKEN.search(out)
    assert counts() == before
    assert sorted(p.name for p in (settings.CORRAL_HOME / "demo-src").iterdir()) == sources


@pytest.mark.django_db
def test_leaves_other_data_alone(make_repo):
    mine = make_repo("api")  # a user's own repository that takes the prefix `api`
    bead = Bead.objects.create(repository=mine, title="my own work")
    agent = Agent(name="mine", preset="shell")
    agent.save()
    run_demo()
    mine.refresh_from_db()
    assert (mine.slug, mine.bead_prefix) == ("api", "api")
    assert list(mine.beads.values_list("id", flat=True)) == [bead.id]
    assert Agent.objects.get(name="mine").token_hash == agent.token_hash
    demo_api = Repository.objects.get(slug="demo-api")
    assert demo_api.bead_prefix == "api2"
    assert all(b.id.startswith("api2-") for b in demo_api.beads.all())


@pytest.mark.django_db
def test_an_existing_demo_agent_is_kept():
    agent = Agent(name="demo-1", preset="shell")
    agent.save()
    out = run_demo()
    assert Agent.objects.get(name="demo-1").token_hash == agent.token_hash
    assert "demo-1  already existed" in out
    assert dict(TOKEN.findall(out)).keys() == {"demo-2"}


@pytest.mark.django_db
def test_a_failure_leaves_nothing_behind(settings):
    # A stale canonical folder makes the third registration fail after two succeeded.
    stale = settings.REPOS_DIR / "demo-infra.git"
    stale.mkdir(parents=True)
    (stale / "keep").write_text("not the demo's")
    with pytest.raises(CommandError, match="demo-infra.git already exists"):
        run_demo()
    assert counts() == (0, 0, 0, 0)
    assert sorted(p.name for p in settings.REPOS_DIR.iterdir()) == ["demo-infra.git"]
    assert (stale / "keep").read_text() == "not the demo's"
    assert list((settings.CORRAL_HOME / "demo-src").iterdir()) == []
    # Once the cause is gone, the demo seeds normally.
    (stale / "keep").unlink()
    stale.rmdir()
    run_demo()
    assert Repository.objects.filter(slug__in=DEMO_SLUGS).count() == 3


@pytest.mark.django_db
def test_a_foreign_folder_in_demo_src_is_refused(settings):
    foreign = settings.CORRAL_HOME / "demo-src" / "demo-web"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="not a demo repository"):
        run_demo()
    assert (foreign / "notes.txt").read_text() == "mine"
    assert counts() == (0, 0, 0, 0)


@pytest.mark.django_db
def test_git_missing_is_one_line(monkeypatch, tmp_path):
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(CommandError) as caught:
        run_demo()
    assert "git is not installed" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert counts() == (0, 0, 0, 0)


@pytest.mark.django_db
def test_reuses_existing_demo_sources(seeded, settings):
    heads = {}
    for repo in Repository.objects.filter(slug__in=DEMO_SLUGS):
        heads[repo.slug] = git(repo.upstream, "rev-parse", "HEAD")
        shutil.rmtree(repo.canonical_path)
        repo.delete()
    run_demo()
    for repo in Repository.objects.filter(slug__in=DEMO_SLUGS):
        assert git(repo.upstream, "rev-parse", "HEAD") == heads[repo.slug]
        assert git(repo.canonical_path, "rev-parse", repo.branch) == heads[repo.slug]
    closed = Bead.objects.filter(status=Bead.Status.CLOSED, repository__slug__in=DEMO_SLUGS)
    assert closed.count() == 3 and all(b.commit_sha for b in closed)


# --- demo --run ----------------------------------------------------------------
# The seed's deferred beads (api "Persist items to a JSON file", web "Dark mode")
# and the one a person blocked (web "Use the new logo in the header") stay as
# they are; every other demo bead ends closed.

LEFT_AS_SEEDED = {
    "Persist items to a JSON file": Bead.Status.DEFERRED,
    "Dark mode": Bead.Status.DEFERRED,
    "Use the new logo in the header": Bead.Status.BLOCKED,
}


def run_demo_run():
    out = StringIO()
    try:
        call_command("demo", "--run", stdout=out)
    except CommandError as e:
        e.output = out.getvalue()
        raise
    return out.getvalue()


def branch_head(repo):
    return git(repo.canonical_path, "rev-parse", f"refs/heads/{repo.branch}")


def open_demo_beads():
    return Bead.objects.filter(repository__slug__in=DEMO_SLUGS, status=Bead.Status.OPEN)


@pytest.mark.django_db
def test_every_open_bead_carries_edits_the_demo_agent_can_make_within_its_scope(seeded):
    from corral_client.demo_agent import edits

    for bead in open_demo_beads():
        assert bead.scope, f"{bead.id} has no scope"
        if bead.issue_type == Bead.Type.EPIC:
            assert not edits(bead.description)  # never claimed: its children do the work
            continue
        steps = edits(bead.description)
        assert steps, f"{bead.id} has no edits"
        assert not bead.description.startswith("```"), "the prose for people comes first"
        paths = [arg for op, arg, _ in steps if op in ("write", "append", "replace", "delete")]
        assert len(paths) == len(steps), f"{bead.id}: only file edits"
        assert not bead.paths_outside_scope(paths), f"{bead.id}: {paths} vs {bead.scope}"
        repo = bead.repository
        for op, path, body in steps:
            if op != "replace":
                continue
            # A replaced passage is in the seeded file once, and no other bead changes it.
            old = body.partition("=====\n")[0]
            text = git(repo.canonical_path, "show", f"{repo.branch}:{path}") + "\n"
            assert text.count(old) == 1, f"{bead.id}: {old!r} in {path}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_run_lands_every_open_demo_bead(rq_redis, tmp_path):
    out = run_demo_run()
    assert "Seeded the demo" in out

    beads = list(Bead.objects.filter(repository__slug__in=DEMO_SLUGS).select_related("repository"))
    assert {b.title: b.status for b in beads if b.title in LEFT_AS_SEEDED} == LEFT_AS_SEEDED
    assert all(b.status == Bead.Status.CLOSED for b in beads if b.title not in LEFT_AS_SEEDED)
    landed = [b for b in beads if b.submissions.filter(status="committed").exists()]
    assert len(landed) == 18
    assert "Landed 18 bead(s) and closed 1 epic(s)" in out
    assert f"22 of {len(beads)} demo beads are closed" in out
    # The change set across demo-api and demo-web landed together, once.
    changeset = ChangeSet.objects.get()
    assert changeset.status == "landed" and changeset.integration_passed
    assert "contract: 0 problem(s)" in changeset.integration_output
    for member in changeset.member_list():
        text = git(
            member.repository.canonical_path, "log", "-1", "--format=%B", member.bead.commit_sha
        )
        assert f"Changeset: {changeset.pk}" in text

    for bead in landed:
        repo = bead.repository
        with_trailer = git(
            repo.canonical_path,
            "log",
            "--format=%H",
            f"--grep=^Bead: {bead.id}$",
            f"refs/heads/{repo.branch}",
        ).split()
        assert with_trailer == [bead.commit_sha], bead
        assert f'landed {bead.id} "{bead.title}" as {bead.commit_sha[:10]}' in out

    # A bead was claimed only once all it `blocks`-depends on had closed, and
    # in one repository its commit comes after theirs.
    blocks = Dependency.objects.filter(type=Dependency.Type.BLOCKS, issue__in=landed)
    for dep in blocks.select_related("issue__repository", "depends_on__repository"):
        issue, blocker = dep.issue, dep.depends_on
        claimed = issue.submissions.get(status="committed").session.created_at
        assert blocker.closed_at <= claimed, dep
        assert blocker.closed_at < issue.closed_at, dep
        if issue.repository_id == blocker.repository_id:
            path = issue.repository.canonical_path
            git(path, "merge-base", "--is-ancestor", blocker.commit_sha, issue.commit_sha)

    epic = next(b for b in beads if b.issue_type == Bead.Type.EPIC)
    children = Bead.objects.filter(dependencies__depends_on=epic, dependencies__type="parent-child")
    assert epic.close_reason == "all its children landed" and not epic.commit_sha
    assert all(epic.closed_at >= child.closed_at for child in children)
    assert f"closed epic {epic.id}" in out

    # demo-infra stays in human review; the run approves as the demo and says so.
    infra = Repository.objects.get(slug="demo-infra")
    assert infra.review_mode == Repository.Review.HUMAN
    for sub in infra.submissions.all():
        assert sub.reviewed_by.get_username() == "corral-demo"
        assert f"approving demo-infra submission {sub.pk} for {sub.bead_id}" in out

    for repo in Repository.objects.filter(slug__in=DEMO_SLUGS):
        checkout = tmp_path / "final" / repo.slug
        git(tmp_path, "clone", "-q", str(repo.canonical_path), str(checkout))
        done = subprocess.run(
            repo.check_argv(), cwd=checkout, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{repo.slug}: {done.stdout}{done.stderr}"

    # A second run lands nothing and says everything is done.
    heads = {repo.slug: branch_head(repo) for repo in Repository.objects.all()}
    again = run_demo_run()
    assert "already there" in again and "Everything is done" in again
    assert "landed" not in again and "round" not in again
    assert {repo.slug: branch_head(repo) for repo in Repository.objects.all()} == heads


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_run_reports_what_is_stuck_and_why(rq_redis):
    run_demo()
    stubborn = Bead.objects.get(title="Rotate nginx logs daily")
    stubborn.description = "Cannot be done.\n\n```corral fail no such file in the design\n```\n"
    stubborn.save()
    epic = open_demo_beads().get(issue_type=Bead.Type.EPIC)
    for bead in open_demo_beads().exclude(pk__in=[stubborn.pk, epic.pk]):
        assert bead.defer()
    heads = {repo.slug: branch_head(repo) for repo in Repository.objects.all()}

    with pytest.raises(CommandError) as caught:
        run_demo_run()
    out = caught.value.output
    assert "2 demo bead(s) did not land" in str(caught.value)
    assert stubborn.id in str(caught.value) and epic.id in str(caught.value)
    # The same failure twice: the bead waits out a back-off rather than spend its
    # last attempt at once, and the run says so.
    assert out.count(f"{stubborn.id} came back from") == 2
    assert "demo agent failed: no such file in the design" in out
    stubborn.refresh_from_db()
    assert stubborn.status == Bead.Status.OPEN and stubborn.attempts == 2
    assert stubborn.waits()
    assert f'Stuck: {stubborn.id} "Rotate nginx logs daily" in demo-infra: open: ' in out
    assert "refused twice for the same reason: waits until" in out
    assert f"Stuck: {epic.id}" in out and "an epic waiting for its children" in out
    assert {repo.slug: branch_head(repo) for repo in Repository.objects.all()} == heads


@pytest.mark.django_db
def test_run_without_redis_is_one_line_and_seeds_nothing(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    with pytest.raises(CommandError) as caught:
        run_demo_run()
    message = str(caught.value)
    assert "\n" not in message
    assert "needs Redis" in message and "manage.py up" in message
    assert counts() == (0, 0, 0, 0)


@pytest.mark.django_db(transaction=True)
def test_run_refuses_while_corrals_workers_listen(rq_redis):
    from rq import Worker

    from agents import queues

    worker = Worker([queues.queue(queues.SESSIONS)], connection=rq_redis)
    worker.register_birth()
    try:
        with pytest.raises(CommandError, match="workers are running"):
            run_demo_run()
    finally:
        worker.register_death()
    assert not Bead.objects.exclude(status__in=["open", "closed", "deferred", "blocked"]).exists()

"""gitops: git runs without Corral's secrets and without any configuration an
agent controls; what a patch writes is read from git; sources are checked."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.jobs.runner import run_session
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import git, program_agent, run_lead
from workspace import gitops
from workspace.models import Repository

SECRET = "corral-secret-probe-4b1d"


@pytest.fixture
def secrets(monkeypatch):
    """Corral's environment with secrets in it, as a worker's is."""
    monkeypatch.setenv("DATABASE_URL", f"postgres://corral:{SECRET}@db/corral")
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("CORRAL_TOKEN", SECRET)


@pytest.mark.django_db
def test_git_gets_none_of_corrals_environment_and_no_global_config(
    repo, secrets, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("[user]\n\tname = From The Global Config\n")
    monkeypatch.setenv("HOME", str(home))
    # An alias starting with ! runs in a shell with git's environment.
    env = gitops.git_run(repo.canonical_path, "-c", "alias.printenv=!env", "printenv")
    name = gitops.git_call(repo.canonical_path, "config", "user.name")
    assert SECRET not in env
    assert "DATABASE_URL" not in env and "SECRET_KEY" not in env
    assert "GIT_CONFIG_NOSYSTEM=1" in env and "GIT_CONFIG_GLOBAL=/dev/null" in env
    assert name.returncode != 0 and name.stdout == ""


def set_traps(clone, marker):
    """What a hostile agent can do to its clone's .git: programs for git to run."""
    trap = clone / ".git" / "trap.sh"
    trap.write_text(f"#!/bin/sh\nenv >> '{marker}'\ncat\n")
    trap.chmod(0o755)
    git(clone, "config", "core.fsmonitor", str(trap))
    git(clone, "config", "filter.trap.clean", str(trap))
    git(clone, "config", "filter.trap.required", "true")
    git(clone, "config", "core.worktree", "/")
    hooks = clone / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in ["post-index-change", "post-checkout", "reference-transaction"]:
        (hooks / name).write_text(trap.read_text())
        (hooks / name).chmod(0o755)
    (clone / ".gitattributes").write_text("* filter=trap\n")


@pytest.mark.django_db
def test_corral_reads_a_clone_without_its_git_config_or_hooks(repo, secrets, tmp_path):
    clone, marker = tmp_path / "clone", tmp_path / "marker"
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    gitops.clone_for_session(repo.canonical_path, clone, base)
    set_traps(clone, marker)
    (clone / "src" / "app.py").write_text("print('changed')\n")
    (clone / ".agents").mkdir()
    (clone / ".agents" / "handoff.md").write_text("never part of the patch\n")
    index = gitops.SessionIndex(clone, base, objects_from=repo.canonical_path)
    try:
        index.refresh()
        numstat = index.numstat()
        patch = index.patch()
    finally:
        index.close()
    assert not marker.exists(), marker.read_text()
    assert numstat == {".gitattributes": 1, "src/app.py": 2}
    assert "+print('changed')" in patch and ".agents" not in patch


@pytest.mark.django_db(transaction=True)
def test_a_session_whose_agent_configured_its_clone_runs_nothing_of_it(
    repo, rq_redis, tmp_path, settings, secrets
):
    settings.WATCH_INTERVAL_SECONDS = 0.1
    marker = tmp_path / "marker"
    agent = program_agent("configurer", str(marker))
    bead = Bead.objects.create(
        repository=repo, title="Configure", scope=["src/**", ".gitattributes"]
    )
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    assert session.status == "submitted", session.error
    assert not marker.exists(), marker.read_text()
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    assert not marker.exists(), marker.read_text()
    sha = bead.commit_sha
    assert git(repo.canonical_path, "show", f"{sha}:src/configured.py") == "CONFIGURED = True"


def commit_files(repo, files, links=(), gitlinks=()):
    """A tree: the branch head plus `files` ({path: bytes or (bytes, mode)}),
    `links` ({path: target}) and gitlinks ({path: sha}), through a private index."""
    path = repo.canonical_path
    head = git(path, "rev-parse", repo.branch)
    with gitops.PrivateIndex(path) as idx:
        idx.git("read-tree", head)
        entries = [(p, *(c if isinstance(c, tuple) else (c, "100644"))) for p, c in files.items()]
        entries += [(p, t.encode(), "120000") for p, t in dict(links).items()]
        for name, content, mode in entries:
            blob = gitops.git_run(path, "hash-object", "-w", "--stdin", stdin=content)
            idx.git("update-index", "--add", "--cacheinfo", f"{mode},{blob},{name}")
        for name, sha in dict(gitlinks).items():
            idx.git("update-index", "--add", "--cacheinfo", f"160000,{sha},{name}")
        return head, idx.git("write-tree")


@pytest.mark.django_db
def test_tree_changes_lists_what_git_would_commit(repo):
    head = git(repo.canonical_path, "rev-parse", repo.branch)
    old, tree = commit_files(
        repo,
        {"docs/a.txt": b"one\ntwo\n", "bin/run": (b"#!/bin/sh\n", "100755"), "z.bin": b"\0" * 70},
        links={"docs/link": "../README.md"},
        gitlinks={"vendor/lib": head},
    )
    changes = {c.path: c for c in gitops.tree_changes(repo.canonical_path, old, tree)}
    assert {p: c.kind for p, c in changes.items()} == {
        "docs/a.txt": "file",
        "bin/run": "exec",
        "z.bin": "file",
        "docs/link": "symlink",
        "vendor/lib": "gitlink",
    }
    assert changes["docs/a.txt"].size == 8 and changes["docs/a.txt"].lines == 2
    assert changes["z.bin"].size == 70 and changes["z.bin"].lines is None
    assert changes["docs/link"].link_target == "../README.md"
    assert changes["vendor/lib"].new_id == head
    assert all(c.old_kind == "absent" for c in changes.values())


@pytest.mark.parametrize(
    "link, target, resolved, through",
    [
        ("docs/a", "b.txt", "docs/b.txt", []),
        ("docs/a", "../README.md", "README.md", []),
        ("docs/a", "..", "", []),
        ("docs/a", "../..", None, []),
        ("docs/a", "/etc/passwd", None, []),
        ("a", "./x//y/../z", "x/z", []),
        ("docs/a", "up/../../..", None, ["docs/up"]),
        ("docs/a", "up/x", "docs/up/x", ["docs/up"]),
    ],
)
def test_resolve_link_follows_the_tree(link, target, resolved, through):
    modes = {"docs": "040000", "docs/up": "120000", "README.md": "100644"}
    assert gitops.resolve_link(link, target, modes) == (resolved, through)


@pytest.mark.parametrize(
    "source, says",
    [
        ("ext::sh -c touch% /tmp/pwned", "ext:: transport is not allowed"),
        ('ext::sh -c "touch /tmp/pwned" x://y', "ext:: transport is not allowed"),
        ("fd::3", "fd:: transport is not allowed"),
        ("-uhttps://example.com/x", "may not start with '-'"),
        ("--upload-pack=touch /tmp/pwned", "may not start with '-'"),
        ("ssh://-oProxyCommand=touch%20/tmp/pwned/x", "a host may not start with '-'"),
        ("ssh://user@-oProxyCommand=x/y", "a host may not start with '-'"),
        ("-oProxyCommand=x:repo", "may not start with '-'"),
        ("gopher://example.com/repo", "gopher:// transport is not allowed"),
        ("https://example.com/a\nb", "one line of printable text"),
    ],
)
def test_check_source_refuses_unsafe_transports_in_one_line(source, says):
    with pytest.raises(gitops.GitError, match=says) as refused:
        gitops.check_source(source)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "source",
    [
        "https://github.com/example/repo.git",
        "http://example.com/repo.git",
        "ssh://git@example.com/repo.git",
        "git://example.com/repo.git",
        "git@github.com:example/repo.git",
        "file:///srv/git/repo.git",
    ],
)
def test_check_source_allows_the_usual_transports(source):
    assert gitops.check_source(source) == source


@pytest.mark.django_db
def test_check_source_takes_a_local_repository_and_no_folder_inside_one(make_source):
    source = make_source("local")
    assert gitops.check_source(str(source)) == str(source)
    (source / "src").mkdir(exist_ok=True)
    with pytest.raises(gitops.GitError, match="not a git repository"):
        gitops.check_source(str(source / "src"))


def test_clone_bare_refuses_the_ext_transport_without_running_it(tmp_path, settings):
    marker = tmp_path / "pwned"
    with pytest.raises(gitops.GitError):
        gitops.clone_bare(f"ext::sh -c touch% {marker}", "evil")
    assert not marker.exists()
    # Below check_source, git itself refuses ext:: (GIT_ALLOW_PROTOCOL).
    done = gitops.run_git(
        ["clone", "--bare", f"ext::sh -c touch% {marker}", str(tmp_path / "x.git")],
        env=gitops.git_env(remote=True),
    )
    assert done.returncode != 0 and not marker.exists()


@pytest.mark.slow
def test_addrepo_refuses_ext_with_one_line_and_no_traceback(tmp_path, sqlite_home):
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["CORRAL_HOME"] = str(sqlite_home)
    marker = tmp_path / "pwned"
    for source in [f'ext::sh -c "touch {marker}" x://y', "ssh://-oProxyCommand=x/y"]:
        done = subprocess.run(
            [sys.executable, "manage.py", "addrepo", source],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert done.stderr.startswith("CommandError: ") and "Traceback" not in done.stderr
    assert not marker.exists()


def run_editor_session(repo):
    agent = program_agent("editor", "src/feature.py=FEATURE = 1")
    bead = Bead.objects.create(repository=repo, title="Feature", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    return session, bead


def landed_before(repo, source):
    """The source's work tree committed and fetched into the canonical branch,
    as a commit landed before addrepo refused a .agents/ would be there."""
    git(source, "add", "-A")
    git(source, "commit", "-qm", "a person commits a .agents/")
    git(repo.canonical_path, "fetch", "-q", str(source), f"+{repo.branch}:{repo.branch}")


@pytest.mark.django_db(transaction=True)
def test_sessions_work_in_a_repository_that_has_an_agents_folder(
    make_source, workspace, rq_redis, settings
):
    """A .agents/ in the repository's history (landed before the paths gate
    and addrepo refused it) no longer fails every session, and no patch touches it."""
    settings.WATCH_INTERVAL_SECONDS = 0.1
    source = make_source("kept", commits=[{"README.md": "x\n"}])
    repo = Repository.register(str(source), workspace)
    (source / ".agents" / "learnings").mkdir(parents=True)
    (source / ".agents" / "learnings" / "keep.md").write_text("k\n")
    landed_before(repo, source)
    session, bead = run_editor_session(repo)
    assert session.status == "submitted", session.error
    assert ".agents" not in session.patch
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed", bead.last_failure
    kept = git(repo.canonical_path, "show", f"{bead.commit_sha}:.agents/learnings/keep.md")
    assert kept == "k"


@pytest.mark.django_db(transaction=True)
def test_a_committed_agents_symlink_does_not_carry_the_context_pack_outside(
    make_source, workspace, rq_redis, settings, tmp_path
):
    settings.WATCH_INTERVAL_SECONDS = 0.1
    outside = tmp_path / "outside"
    outside.mkdir()
    source = make_source("linked", commits=[{"README.md": "x\n"}])
    repo = Repository.register(str(source), workspace)
    (source / ".agents").symlink_to(outside)
    landed_before(repo, source)
    session, _ = run_editor_session(repo)
    assert session.status == "submitted", session.error
    assert list(outside.iterdir()) == []
    assert "Feature" in session.context and ".agents" not in session.patch


@pytest.mark.django_db
def test_a_commit_written_without_commit_tree_is_the_one_commit_tree_makes(repo):
    path = repo.canonical_path
    head = gitops.head_sha(path, repo.branch)
    tree = gitops.tree_of(path, head)
    message = gitops.commit_message("Title", "A body.", [("Bead", "b-1"), ("Session", "7")])
    author = ("agent-1", "agent-1@agents.corral.invalid")
    sha = gitops.write_commit(path, tree, head, message, author=author)
    # commit-tree at the same second makes the same object: same id.
    when = gitops.git_run(path, "log", "-1", "--format=%ad", "--date=raw", sha)
    env = {
        "GIT_AUTHOR_NAME": author[0],
        "GIT_AUTHOR_EMAIL": author[1],
        "GIT_COMMITTER_NAME": gitops.LEAD_IDENTITY[0],
        "GIT_COMMITTER_EMAIL": gitops.LEAD_IDENTITY[1],
        "GIT_AUTHOR_DATE": when,
        "GIT_COMMITTER_DATE": when,
    }
    made = gitops.git_run(path, "commit-tree", tree, "-p", head, "-F", "-", stdin=message, env=env)
    assert sha == made
    fields = gitops.git_run(path, "log", "-1", "--format=%T %P %an <%ae> %cn", sha)
    assert fields == f"{tree} {head} agent-1 <agent-1@agents.corral.invalid> Corral lead"
    assert gitops.trailers_of_commits(path, [sha])[sha] == [("Bead", "b-1"), ("Session", "7")]


def test_an_ident_loses_what_git_would_strip():
    assert gitops.ident(" .Ann <x>\n", "<a@b.c>", 0).startswith("Ann x <a@b.c> 0 ")
    with pytest.raises(gitops.GitError):
        gitops.ident("...", "a@b.c", 0)


@pytest.mark.django_db
def test_a_kept_git_that_ended_is_started_again(repo):
    path = repo.canonical_path
    head = gitops.head_sha(path, repo.branch)
    args = ("cat-file", "--batch-check=%(objectname) %(objecttype)")
    first = gitops.kept(path, *args)
    assert first.ask(head) == f"{head} commit"
    first.proc.kill()
    first.proc.wait()
    with pytest.raises(gitops.GitError):
        first.ask(head)
    again = gitops.kept(path, *args)
    assert again is not first
    assert again.ask(head) == f"{head} commit"


def test_a_git_that_runs_too_long_is_killed(tmp_path):
    env = gitops.git_env()
    with pytest.raises(subprocess.TimeoutExpired):
        gitops.run_git(["-c", "alias.slow=!exec sleep 2", "slow"], env, cwd=tmp_path, timeout=0.2)


@pytest.mark.django_db
def test_a_process_keeps_only_so_many_git_processes(repo, monkeypatch):
    monkeypatch.setattr(gitops, "KEPT_MAX", 2)
    path = repo.canonical_path
    head = gitops.head_sha(path, repo.branch)
    first, *_ = [gitops.kept(path, "cat-file", f"--batch-check=%(objectname) {n}") for n in "abc"]
    assert first.proc.wait(timeout=10) == 0  # the oldest was closed: it read the end and left
    assert len([k for k in gitops.KEPT if k[1] == str(path)]) == 2
    assert gitops.kept(path, "cat-file", "--batch-check=%(objectname) c").ask(head) == f"{head} c"


@pytest.mark.django_db
def test_a_kept_git_that_answered_enough_is_started_again(repo, monkeypatch):
    monkeypatch.setattr(gitops, "KEPT_ASKS", 2)
    path = repo.canonical_path
    head = gitops.head_sha(path, repo.branch)
    args = ("cat-file", "--batch-check=%(objectname)")
    first = gitops.kept(path, *args)
    assert [first.ask(head), first.ask(head)] == [head, head]
    again = gitops.kept(path, *args)
    assert again is not first and first.proc.wait(timeout=10) == 0
    assert again.ask(head) == head


@pytest.mark.django_db
def test_a_branchs_tree_is_asked_again_after_it_moves(repo):
    path = repo.canonical_path
    head = gitops.head_sha(path, repo.branch)
    before = gitops.tree_id(path, repo.branch)
    tree = gitops.git_run(path, "mktree", stdin="")
    moved = gitops.write_commit(path, tree, head, "Empty\n")
    assert gitops.update_branch(path, repo.branch, moved, head)
    assert gitops.tree_id(path, moved) == tree  # remembered from writing it
    assert gitops.tree_id(path, repo.branch) == tree != before  # a ref: asked again

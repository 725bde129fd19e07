"""Corral's reads of a session's clone never follow a `.git` below its top: a
gitdir file, a `.git` folder or a symlink there would make git read another
repository (its HEAD into the patch as a gitlink). Such a folder is left out."""

import subprocess

import pytest

from agents.jobs.runner import run_session
from agents.models import LogChunk
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import git, program_agent
from workspace import gitops

KINDS = ["gitdir file", "git folder", "git symlink"]


@pytest.fixture
def other(tmp_path):
    """Another real repository on the machine, with a commit of its own."""
    path = tmp_path / "other"
    path.mkdir()
    git(path, "init", "-q")
    (path / "secret.txt").write_text("not the session's\n")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "another repository's commit")
    return path


def nest(folder, kind, other):
    """Make `folder` look like another repository to git."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "gitdir file":
        (folder / ".git").write_text(f"gitdir: {other / '.git'}\n")
    elif kind == "git symlink":
        (folder / ".git").symlink_to(other / ".git")
    else:
        git(folder, "init", "-q")
        (folder / "own.txt").write_text("a repository of the agent's own\n")
        git(folder, "add", "-A")
        git(folder, "commit", "-qm", "nested")


def read_clone(repo, clone, base):
    index = gitops.SessionIndex(clone, base, objects_from=repo.canonical_path)
    try:
        index.refresh()
        return index.numstat(), index.patch(), index.nested
    finally:
        index.close()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_a_nested_repository_is_left_out_and_never_read(repo, other, tmp_path, kind):
    clone = tmp_path / "clone"
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    gitops.clone_for_session(repo.canonical_path, clone, base)
    nest(clone / "src" / "vendored", kind, other)
    (clone / "src" / "vendored" / "lib.py").write_text("VENDORED = True\n")
    (clone / "src" / "app.py").write_text("print('changed')\n")
    numstat, patch, nested = read_clone(repo, clone, base)
    heads = {git(other, "rev-parse", "HEAD")}
    if kind == "git folder":
        heads.add(git(clone / "src" / "vendored", "rev-parse", "HEAD"))
    assert numstat == {"src/app.py": 2}
    assert not any(sha in patch or sha[:7] in patch for sha in heads), patch
    assert "Subproject commit" not in patch and "vendored" not in patch
    assert nested == ["src/vendored"]


@pytest.mark.django_db
def test_a_gitdir_file_in_a_tracked_folder_neither_hides_its_files_nor_is_read(
    repo, other, tmp_path
):
    """git walks a folder the index tracks as the clone's own: its changes stay
    in the patch. Once every file there is deleted it would not: left out then."""
    clone = tmp_path / "clone"
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    gitops.clone_for_session(repo.canonical_path, clone, base)
    nest(clone / "src", "gitdir file", other)
    (clone / "src" / "app.py").write_text("print('changed')\n")
    numstat, patch, nested = read_clone(repo, clone, base)
    assert (numstat, nested) == ({"src/app.py": 2}, [])
    (clone / "src" / "app.py").unlink()
    index = gitops.SessionIndex(clone, base, objects_from=repo.canonical_path)
    try:
        index.refresh()
        index.refresh()  # now src/ holds no file the index tracks
        numstat, patch, nested = index.numstat(), index.patch(), index.nested
    finally:
        index.close()
    assert (numstat, nested) == ({"src/app.py": 1}, ["src"])
    assert git(other, "rev-parse", "HEAD") not in patch and "Subproject" not in patch


@pytest.mark.django_db
def test_a_submodule_in_the_base_keeps_its_commit_whatever_its_gitdir_says(repo, other, tmp_path):
    """A gitlink the repository holds: git would read the commit of whatever
    repository the folder's .git names. It stays as the base has it."""
    path, clone = repo.canonical_path, tmp_path / "clone"
    head = git(path, "rev-parse", repo.branch)
    with gitops.PrivateIndex(path) as idx:
        idx.git("read-tree", head)
        idx.git("update-index", "--add", "--cacheinfo", f"160000,{head},vendor/lib")
        tree = idx.git("write-tree")
    base = gitops.commit_tree(path, tree, head, "a submodule")
    gitops.clone_for_session(path, clone, base)
    nest(clone / "vendor" / "lib", "gitdir file", other)
    (clone / "src" / "app.py").write_text("print('changed')\n")
    numstat, patch, nested = read_clone(repo, clone, base)
    assert numstat == {"src/app.py": 2}
    assert git(other, "rev-parse", "HEAD") not in patch and "Subproject" not in patch
    assert nested == ["vendor/lib"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["file", "link"])
def test_a_session_cannot_carry_another_repositorys_head_into_its_submission(
    repo, other, settings, how
):
    settings.WATCH_INTERVAL_SECONDS = 0.1
    target = str(other / ".git")
    agent = program_agent("nester", target, *(["link"] if how == "link" else []))
    bead = Bead.objects.create(repository=repo, title="Own it", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    session.refresh_from_db()
    log = "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))
    assert session.status == "submitted", session.error + log
    other_head = git(other, "rev-parse", "HEAD")
    for text in (session.patch, session.summary, session.error, log, str(session.changed_files)):
        assert other_head not in text and other_head[:7] not in text
    assert session.changed_files == ["src/own.py"]
    assert "Left out src/vendored" in log
    done = subprocess.run(["git", "-C", str(other), "status", "--porcelain"], capture_output=True)
    assert done.stdout == b""  # the other repository is as it was

"""The gates judge the tree git builds from a patch, not Corral's reading of it:
paths, symlinks, submodules, sizes. And what git cannot read is a 400."""

import json
import tempfile
from pathlib import Path

import pytest

from agents.models import GateResult, Session
from beads.models import Bead
from tests.agents.test_api import new_agent
from tests.factories import commits, git, git_raw, make_patch, run_lead, submit
from workspace.models import Repository

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def repo(make_source, workspace):
    source = make_source(
        "app",
        commits=[
            {"README.md": "# app\n", "src/app.py": "print('hello')\n"},
            {"tests/test_ok.py": "def test_ok():\n    assert True\n", "docs/index.md": "docs\n"},
        ],
    )
    return Repository.register(str(source), workspace)


def outcome(sub):
    sub.refresh_from_db()
    sub.bead.refresh_from_db()
    return sub.status, sub.bead.status


def gate(sub, name):
    return GateResult.objects.get(submission=sub, gate=name)


def head(repo):
    return git(repo.canonical_path, "rev-parse", repo.branch)


def send(repo, agent, patch, scope=("docs/**",), base=None):
    """A bead with `scope` whose session hands in `patch`; the lead runs."""
    bead = Bead.objects.create(repository=repo, title="Work", scope=list(scope))
    sub = submit(bead, agent, patch, base or head(repo))
    run_lead(repo)
    return sub


def binary_patch(repo, files=None, links=None, delete=()):
    """`git diff --binary` with every path marked binary; a symlink's target
    travels base85-encoded in a GIT binary patch, in no `+` line (git writes
    symlinks as text: each link is made as a file holding its target, and its
    mode line changed to a symlink's, as a hostile agent can)."""
    base = head(repo)
    with tempfile.TemporaryDirectory() as work:
        git(work, "clone", "-q", "--shared", str(repo.canonical_path), ".")
        git(work, "checkout", "-q", "--detach", base)
        Path(work, ".git", "info", "attributes").write_text("* binary\n")
        for rel in delete:
            Path(work, rel).unlink()
            if not any(Path(work, rel).parent.iterdir()):
                Path(work, rel).parent.rmdir()
        written = {**(files or {}), **{rel: t.encode() for rel, t in (links or {}).items()}}
        for rel, content in written.items():
            Path(work, rel).parent.mkdir(parents=True, exist_ok=True)
            Path(work, rel).write_bytes(content)
        git(work, "add", "-A")
        patch = git_raw(work, "diff", "--cached", "--binary", base)
    for rel in links or {}:
        header = f"diff --git a/{rel} b/{rel}\nnew file mode "
        assert patch.count(header + "100644\n") == 1
        patch = patch.replace(header + "100644\n", header + "120000\n")
    return base, patch


def test_a_symlink_in_a_binary_patch_is_judged_by_its_target(repo, agent, rq_redis):
    before = commits(repo)
    base, patch = binary_patch(repo, links={"docs/escape": "../../../etc"})
    assert "GIT binary patch" in patch and "+../" not in patch
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("rejected", "open")
    assert gate(sub, "apply").passed is True
    assert gate(sub, "paths").passed is False
    assert "docs/escape: a symlink to '../../../etc', outside the repository" in sub.reason
    assert commits(repo) == before


def test_a_dot_agents_symlink_never_lands(repo, agent, rq_redis):
    before = commits(repo)
    base, patch = binary_patch(repo, links={".agents": "/tmp"})
    sub = send(repo, agent, patch, scope=["**"], base=base)
    assert outcome(sub) == ("rejected", "open")
    assert ".agents: a path under .agents/" in gate(sub, "paths").detail
    assert "outside the repository" in gate(sub, "paths").detail
    assert commits(repo) == before


def test_paths_under_dot_agents_are_refused(repo, agent, rq_redis):
    base, patch = make_patch(repo, {".agents/learnings/keep.md": "# Keep\n\nme\n"})
    sub = send(repo, agent, patch, scope=["**"], base=base)
    assert outcome(sub) == ("rejected", "open")
    assert ".agents/learnings/keep.md: a path under .agents/" in gate(sub, "paths").detail
    assert (
        git(repo.canonical_path, "ls-tree", "-r", "--name-only", repo.branch).count(".agents") == 0
    )


@pytest.mark.parametrize("name", [".Agents/context.md", ".agents./handoff.md", ".AGENTS "])
def test_what_a_file_system_would_take_for_dot_agents_is_refused(repo, agent, rq_redis, name):
    base, patch = make_patch(repo, {name: "from the repository\n"})
    sub = send(repo, agent, patch, scope=["**"], base=base)
    assert outcome(sub) == ("rejected", "open")
    assert f"{name}: a path under .agents/" in gate(sub, "paths").detail


def test_a_header_without_prefixes_is_judged_by_the_path_git_writes(repo, agent, rq_redis):
    """git apply -p1 reads `docs/tests/test_ok.py` as tests/test_ok.py: outside docs/**."""
    patch = (
        "diff --git docs/tests/test_ok.py docs/tests/test_ok.py\n"
        "--- docs/tests/test_ok.py\n+++ docs/tests/test_ok.py\n"
        "@@ -1,2 +1,2 @@\n def test_ok():\n-    assert True\n+    assert 'weakened'\n"
    )
    before = head(repo)
    sub = send(repo, agent, patch)
    assert outcome(sub) == ("rejected", "open")
    assert gate(sub, "scope").passed is False
    assert "tests/test_ok.py" in gate(sub, "scope").detail
    assert head(repo) == before
    assert "assert True" in git(repo.canonical_path, "show", f"{repo.branch}:tests/test_ok.py")


def test_a_symlink_inside_the_repository_lands_through_a_binary_patch(repo, agent, rq_redis):
    base, patch = binary_patch(repo, links={"docs/readme": "../README.md"})
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("committed", "closed"), sub.reason
    mode = git(repo.canonical_path, "ls-tree", repo.branch, "docs/readme").split()[0]
    assert mode == "120000"


def test_a_symlink_through_a_symlink_is_refused(repo, agent, rq_redis):
    base, patch = binary_patch(repo, links={"docs/up": "..", "docs/via": "up/src/app.py"})
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("rejected", "open")
    assert "docs/via: a symlink to 'up/src/app.py' through the symlink docs/up" in sub.reason


@pytest.mark.slow
def test_a_new_symlink_that_carries_an_old_one_outside_is_refused(repo, agent, rq_redis):
    # docs/old points at docs/d/../../README.md: README.md while docs/d is a folder.
    base, patch = make_patch(repo, {"docs/d/keep.md": "x\n"})
    assert outcome(send(repo, agent, patch, base=base))[0] == "committed"
    base, patch = binary_patch(repo, links={"docs/old": "d/../../README.md"})
    assert outcome(send(repo, agent, patch, base=base))[0] == "committed"
    # Now docs/d becomes a symlink to the root: docs/old would resolve above it.
    base, patch = binary_patch(repo, links={"docs/d": ".."}, delete=["docs/d/keep.md"])
    before = head(repo)
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("rejected", "open"), sub.reason
    assert "docs/old: a symlink to 'd/../../README.md' that now passes through" in sub.reason
    assert head(repo) == before


@pytest.mark.parametrize("allowed", [False, True])
def test_gitlinks_and_gitmodules_need_the_repository_to_allow_them(repo, agent, rq_redis, allowed):
    repo.allow_submodules = allowed
    repo.save()
    base = head(repo)
    with tempfile.TemporaryDirectory() as work:
        git(work, "clone", "-q", "--shared", str(repo.canonical_path), ".")
        git(work, "checkout", "-q", "--detach", base)
        git(work, "update-index", "--add", "--cacheinfo", f"160000,{base},vendor/lib")
        Path(work, ".gitmodules").write_text('[submodule "lib"]\n\tpath = vendor/lib\n')
        git(work, "add", ".gitmodules")
        patch = git_raw(work, "diff", "--cached", "--binary", base)
    sub = send(repo, agent, patch, scope=["**"], base=base)
    if allowed:
        assert outcome(sub) == ("committed", "closed"), sub.reason
        return
    assert outcome(sub) == ("rejected", "open")
    assert "vendor/lib: a submodule (gitlink)" in sub.reason
    assert ".gitmodules: a .gitmodules file" in sub.reason


def test_a_big_file_in_a_small_binary_patch_is_refused_before_git_inflates_it(
    repo, agent, rq_redis
):
    repo.max_blob_bytes = 1_000_000
    repo.save()
    base, patch = binary_patch(repo, files={"docs/zeros.bin": b"\0" * 3_000_000})
    assert len(patch) < 20_000  # compressed: the patch has a few lines, the file 3 MB
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("rejected", "open")
    assert (
        "docs/zeros.bin: a binary hunk declares 3000000 bytes, over the repository's cap "
        "of 1000000 per file"
    ) in sub.reason
    assert gate(sub, "apply").passed is False


def test_a_big_file_is_refused_by_its_size_in_git(repo, agent, rq_redis):
    repo.max_blob_bytes = 100_000
    repo.save()
    base, patch = make_patch(repo, {"docs/big.md": ("x" * 49_999 + "\n") * 3})
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("rejected", "open")
    assert "docs/big.md: 150000 bytes, over the cap of 100000 per file" in sub.reason
    assert gate(sub, "size").passed is False


def test_the_bytes_a_submission_writes_are_capped_in_total(repo, agent, rq_redis):
    repo.max_blob_bytes, repo.max_total_bytes = 1_000_000, 1_500_000
    repo.save()
    files = {f"docs/{n}.bin": bytes([n]) * 600_000 for n in range(3)}
    base, patch = binary_patch(repo, files=files)
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("rejected", "open")
    assert "1800000 byte(s) written (cap 1500000)" in gate(sub, "size").detail
    repo.max_total_bytes = 2_000_000
    repo.save()
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("committed", "closed"), sub.reason


def test_the_line_cap_counts_gits_numstat(repo, agent, rq_redis):
    agent.max_changed_lines = 10
    agent.save()
    base, patch = make_patch(repo, {"docs/long.md": "".join(f"{n}\n" for n in range(11))})
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("rejected", "open")
    assert "11 line(s) (cap 10)" in gate(sub, "size").detail


def test_a_patch_that_changes_nothing_is_refused(repo, agent, rq_redis):
    base, patch = make_patch(repo, {"docs/new.md": "new\n"})
    assert outcome(send(repo, agent, patch, base=base))[0] == "committed"
    before = head(repo)
    # The same change again, from the same base: git's three-way merge makes it a no-op.
    sub = send(repo, agent, patch, base=base)
    assert outcome(sub) == ("rejected", "open")
    assert "changes nothing" in gate(sub, "apply").detail
    assert head(repo) == before


# The API: whatever the text, a patch git cannot read is a 400, never a 500.

MALFORMED = {
    "quoted backslash": 'diff --git a/x b/x\n--- a/x\n+++ "\\"\n',
    "octal out of range": 'diff --git a/x b/x\n--- a/x\n+++ "b/\\777"\n',
    "lone surrogate": "diff --git a/x b/x\n--- a/x\n+++ b/\ud800\n@@ -1 +1 @@\n-a\n+b\n",
    "NUL": "diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+\0\n",
    "not applicable": "diff --git a/docs/index.md b/docs/index.md\n--- a/docs/index.md\n"
    "+++ b/docs/index.md\n@@ -1 +1 @@\n-not what is there\n+x\n",
    "garbage after header": "diff --git a/x b/x\nGIT binary patch\nliteral 9\nzzzz\n",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_the_api_answers_a_malformed_patch_with_400(repo, kind):
    _, client = new_agent()
    Bead.objects.create(repository=repo, title="x", scope=["docs/**"])
    session = client.post("claim").json()["session"]
    # json.dumps escapes a lone surrogate as \ud800, as a real client sends it.
    body = json.dumps({"patch": MALFORMED[kind], "summary": "s"})
    response = client.post(f"sessions/{session}/submit", raw=body)
    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert Session.objects.get(pk=session).status == "claimed"  # nothing lost


def test_the_api_takes_a_binary_patch_git_can_apply(repo, rq_redis):
    _, client = new_agent()
    Bead.objects.create(repository=repo, title="x", scope=["docs/**"])
    claimed = client.post("claim").json()
    _, patch = binary_patch(repo, files={"docs/zeros.bin": b"\0" * 1000})
    response = client.post(f"sessions/{claimed['session']}/submit", {"patch": patch})
    assert response.status_code == 201, response.content

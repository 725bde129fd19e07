"""Property tests of the gates: generated patches, hostile ones among them, go
through the API and the lead (gitops, gates, commit), and the invariant holds.

A refused submission never moves the branch. A landed commit changes only
paths within the bead's scope, none under `.git` (in any case) or `.agents/`,
and leaves no symlink that resolves, on a real file system, outside the
repository. Patches are made by git (`git diff --binary` of generated trees:
text, executable, binary, symlink and gitlink entries, deletions), then often
mangled as a hostile agent would: headers without their a/ b/ prefixes, paths
swapped for hostile ones, paths C-quoted with octal escapes, a file's mode line
turned into a symlink's.
"""

import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents import patches
from agents.jobs import lead
from agents.models import Submission
from beads.models import Bead
from tests.agents.test_api import new_agent
from tests.factories import git, git_raw
from workspace.models import Repository

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SCOPE = ["docs/**"]
PROPERTY = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,  # the same patches on every run
    database=None,  # and no .hypothesis/ folder in the working tree
    suppress_health_check=list(HealthCheck),
)
PARTS = ["docs", "docs", "docs", "src", "tests", "sub", "é", "a b", 'q"t', "x.txt", "test_ok.py"]
TARGETS = ["../README.md", "..", "../..", "/etc", "x.txt", "../.git/config", "../.agents"]
TARGETS += ["sub/../../..", "é", "../tests/test_ok.py", "../../tmp", "index.md", "docs", "."]
EXISTING = ["docs/index.md", "tests/test_ok.py", "src/app.py", "README.md"]
HOSTILE = ["../evil.txt", ".git/config", ".GIT/x", ".agents/context.md", ".agents", "docs/.git/x"]
HOSTILE += ["docs/../tests/test_ok.py", "/etc/passwd", "tests/test_ok.py", "docs/.Git/hooks/x"]
HOSTILE += ["docs/.agents", "docs/sub/../../src/app.py", "docs/ok.md"]
KINDS = ["text", "exec", "binary", "symlink", "fake-symlink", "gitlink", "delete"]


@pytest.fixture
def repo(make_source, workspace):
    source = make_source(
        "app",
        commits=[
            {"README.md": "# app\n", "src/app.py": "print('hello')\n"},
            {"tests/test_ok.py": "def test_ok():\n    assert True\n", "docs/index.md": "docs\n"},
        ],
    )
    repo = Repository.register(str(source), workspace)
    repo.max_agents = 100
    repo.save()
    return repo


# Half the paths within the scope, so that a fair share of patches land and the
# invariant is checked on commits, not only on refusals.
paths = st.one_of(
    st.lists(st.sampled_from(PARTS), min_size=1, max_size=2).map(lambda p: "docs/" + "/".join(p)),
    st.lists(st.sampled_from(PARTS), min_size=1, max_size=3).map("/".join),
)
ops = st.tuples(
    st.sampled_from(KINDS),
    paths,
    st.sampled_from(TARGETS),
    st.binary(min_size=0, max_size=64),
    st.sampled_from(EXISTING),
)
mangles = st.one_of(
    st.just(("none",)),
    st.just(("none",)),
    st.just(("strip-prefixes",)),
    st.tuples(st.just("swap"), st.sampled_from(HOSTILE)),
    st.tuples(st.just("quote"), st.booleans()),
)


def hash_object(path, content):
    return (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            env={**os.environ, "GIT_DIR": str(path)},
            input=content,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )


def build_tree(repo, base, operations, index_file):
    """The tree `base` plus the operations, made in a private index; the paths it
    wrote, and the ones whose mode line a hostile agent will turn into a symlink's."""
    path = repo.canonical_path
    env = {**os.environ, "GIT_DIR": str(path), "GIT_INDEX_FILE": index_file}

    def index(*args):
        subprocess.run(["git", "update-index", *args], env=env, capture_output=True)

    subprocess.run(["git", "read-tree", base], env=env, check=True)
    fake_links = []
    for kind, name, target, data, existing in operations:
        if kind == "delete":
            index("--force-remove", existing)
        elif kind == "gitlink":
            index("--add", "--replace", "--cacheinfo", f"160000,{base},{name}")
        elif kind == "symlink":
            blob = hash_object(path, target.encode())
            index("--add", "--replace", "--cacheinfo", f"120000,{blob},{name}")
        else:
            # Text as an agent's JSON can carry it: any characters, as UTF-8.
            text = data.replace(b"\0", b"").decode("latin-1").encode() + b"\n"
            content = {"binary": b"\0" + data, "fake-symlink": target.encode()}.get(kind, text)
            mode = "100755" if kind == "exec" else "100644"
            blob = hash_object(path, content)
            index("--add", "--replace", "--cacheinfo", f"{mode},{blob},{name}")
            if kind == "fake-symlink":
                fake_links.append(name)
    tree = subprocess.run(
        ["git", "write-tree"], env=env, capture_output=True, check=True, text=True
    ).stdout.strip()
    return tree, fake_links


def make_hostile_patch(repo, base, operations, all_binary):
    with tempfile.TemporaryDirectory() as tmp:
        tree, fake_links = build_tree(repo, base, operations, os.path.join(tmp, "index"))
        attributes = Path(tmp, "attributes")
        attributes.write_text("* binary\n" if all_binary else "")
        patch = git_raw(
            repo.canonical_path,
            "-c",
            f"core.attributesFile={attributes}",
            "diff",
            "--binary",
            "--no-renames",
            base,
            tree,
        )
    for name in fake_links:
        for header in (f"diff --git a/{name} b/{name}\n", f'diff --git "a/{quote_body(name)}"'):
            patch = patch.replace(
                f"{header}new file mode 100644\n", f"{header}new file mode 120000\n"
            )
    return patch


def quote_body(name, everything=False):
    """git's C quoting of a path, every byte as octal when `everything`."""
    out = []
    for byte in name.encode():
        char = chr(byte)
        if everything or byte >= 0x80 or byte < 0x20:
            out.append(f"\\{byte:03o}")
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


HEADERS = ("diff --git ", "--- ", "+++ ")


def mangle(patch, how):
    lines = patch.split("\n")
    if how[0] == "strip-prefixes":
        lines = [strip_prefixes(line) for line in lines]
    elif how[0] == "swap":
        names = [line.split(" b/", 1)[1] for line in lines if line.startswith("diff --git a/")]
        if names:
            old = names[0]
            lines = [
                line.replace(f"a/{old}", f"a/{how[1]}").replace(f"b/{old}", f"b/{how[1]}")
                if line.startswith(HEADERS)
                else line
                for line in lines
            ]
    elif how[0] == "quote":
        lines = [quote_line(line, how[1]) for line in lines]
    return "\n".join(lines)


def strip_prefixes(line):
    if line.startswith("diff --git a/"):
        return line.replace(" a/", " ", 1).replace(" b/", " ", 1)
    if line.startswith(("--- a/", "+++ b/")):
        return line[:4] + line[6:]
    return line


def quote_line(line, everything):
    if line.startswith("diff --git a/") and " b/" in line:
        old, new = line[len("diff --git ") :].split(" b/", 1)
        return f'diff --git "{quote_body(old, everything)}" "{quote_body("b/" + new, everything)}"'
    if line.startswith(("--- a/", "+++ b/")):
        return f'{line[:4]}"{quote_body(line[4:], everything)}"'
    return line


def head(repo):
    return git(repo.canonical_path, "rev-parse", repo.branch)


def forbidden(path):
    parts = path.split("/")
    return (
        path.startswith("/")
        or ".." in parts
        or any(part.lower().rstrip(". ") == ".git" for part in parts)
        or parts[0].lower() == ".agents"
    )


def assert_landed_commit_is_safe(repo, bead, old, new):
    raw = git_raw(repo.canonical_path, "diff-tree", "-r", "-z", "--no-renames", old, new)
    fields = raw.rstrip("\0").split("\0")
    changed = [
        (meta.split(" ")[1], name) for meta, name in zip(fields[0::2], fields[1::2], strict=True)
    ]
    names = [name for _, name in changed]
    assert names, "a landed commit changes something"
    assert bead.paths_outside_scope(names) == [], names
    assert not [name for name in names if forbidden(name)], names
    if any(mode == "120000" for mode, _ in changed):
        assert_no_symlink_leaves(repo, new)


def assert_no_symlink_leaves(repo, tree):
    """Check the tree out on a real file system; every symlink resolves inside it."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp, "work")
        work.mkdir()
        env = {**os.environ, "GIT_DIR": str(repo.canonical_path), "GIT_INDEX_FILE": f"{tmp}/ix"}
        subprocess.run(["git", "read-tree", tree], env=env, check=True)
        subprocess.run(["git", f"--work-tree={work}", "checkout-index", "-a"], env=env, check=True)
        root = os.path.realpath(work)
        for link in [p for p in work.rglob("*") if p.is_symlink()]:
            resolved = os.path.realpath(link)
            assert resolved == root or resolved.startswith(root + os.sep), (link, resolved)


@PROPERTY
@given(
    operations=st.lists(ops, min_size=1, max_size=4),
    all_binary=st.booleans(),
    how=mangles,
)
def test_no_patch_lands_outside_its_scope_or_the_repository(
    repo, rq_redis, operations, all_binary, how
):
    _, client = new_agent(f"fuzz-{Bead.objects.count()}")
    bead = Bead.objects.create(repository=repo, title="Fuzzed", scope=SCOPE)
    claimed = client.post("claim", {"bead": bead.id}).json()
    patch = mangle(make_hostile_patch(repo, claimed["base_sha"], operations, all_binary), how)
    before = head(repo)
    response = client.post(f"sessions/{claimed['session']}/submit", {"patch": patch})
    assert response.status_code in (201, 400), response.content
    if response.status_code == 400:
        event("400")
        assert head(repo) == before
        return
    lead.drain(repo.pk)
    bead.refresh_from_db()
    submission = Submission.objects.get(bead=bead)
    assert submission.status in ("committed", "rejected", "conflict"), submission.reason
    if submission.status != "committed":
        event(f"refused: {submission.reason.split(':')[0]}")
        assert head(repo) == before, submission.reason
        return
    event("landed" + (" symlink" if "120000" in patch else ""))
    assert git(repo.canonical_path, "rev-parse", f"{head(repo)}^") == before
    assert_landed_commit_is_safe(repo, bead, before, head(repo))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(
    text=st.one_of(
        st.text(),
        st.lists(
            st.sampled_from(
                [
                    "diff --git a/x b/x",
                    'diff --git "a/\\303" "b/\\777"',
                    '+++ "\\"',
                    '--- "a/\\',
                    "+++ b/\ud800",
                    "@@ -1,2 +1 @@",
                    "@@ -0,0 +1,99999999999999999999 @@",
                    "new file mode 120000",
                    "rename from ",
                    "GIT binary patch",
                    "+x",
                    "-y",
                    " z",
                    "\\ No newline at end of file",
                    "\0",
                ]
            )
            | st.text(max_size=20)
        ).map("\n".join),
    )
)
def test_reading_any_text_as_a_patch_raises_nothing_but_patch_error(text):
    try:
        changes = patches.parse(text)
    except patches.PatchError:
        return
    patches.summarize(changes)

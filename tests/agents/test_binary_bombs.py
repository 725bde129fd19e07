"""A binary patch is a compressed one: a few lines can declare a blob of
gigabytes. What a binary hunk declares is refused over the repository's cap
before git inflates anything; what git writes while the lead judges a patch
stays out of the canonical store until it lands; and git's memory is capped.

No test here allocates what it declares: the payloads are a few bytes."""

import base64
import hashlib
import os
import socket
import subprocess
import zlib

import pytest

from agents.models import GateResult, Session
from beads.models import Bead
from tests.agents.test_api import new_agent
from tests.agents.test_gates import binary_patch, head, outcome
from tests.factories import git, make_patch, run_lead, submit
from workspace.models import Repository

pytestmark = pytest.mark.django_db(transaction=True)
GIB = 1 << 30


@pytest.fixture
def repo(make_source, workspace):
    source = make_source("app", commits=[{"README.md": "# app\n", "docs/index.md": "docs\n"}])
    return Repository.register(str(source), workspace)


def base85_lines(data: bytes) -> str:
    """`data` (deflated) as git writes it in a binary hunk: a length letter,
    then base85 of each 52 bytes."""
    lines = []
    for at in range(0, len(data), 52):
        chunk = data[at : at + 52]
        letter = (
            chr(ord("A") + len(chunk) - 1) if len(chunk) <= 26 else chr(ord("a") + len(chunk) - 27)
        )
        lines.append(letter + base64.b85encode(chunk + b"\0" * (-len(chunk) % 4)).decode())
    return "\n".join(lines) + "\n"


def varint(n: int) -> bytes:
    """A size as a git delta's header writes it (7 bits a byte, low first)."""
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def hunk(kind: str, declared: int, payload: bytes) -> str:
    return f"{kind} {declared}\n{base85_lines(zlib.compress(payload))}\n"


def bomb(kind: str) -> tuple[str, str]:
    """(path, patch) declaring a 1 GiB blob with a payload of a few bytes."""
    if kind == "literal":
        path, header = "docs/bomb.bin", "new file mode 100644\nindex 0000000..1111111\n"
        hunks = hunk("literal", GIB, b"\0" * 64) + hunk("literal", 0, b"")
    elif kind == "delta":
        path, header = "docs/index.md", "index 2222222..1111111 100644\n"
        data = varint(5) + varint(GIB) + b"\x01x"  # from the 5-byte docs, make 1 GiB
        hunks = hunk("delta", len(data), data) + hunk("delta", len(data), data)
    else:  # the reverse hunk: git inflates it too, though it never applies it
        path, header = "docs/bomb.bin", "new file mode 100644\nindex 0000000..1111111\n"
        hunks = hunk("literal", 3, b"abc") + hunk("literal", GIB, b"\0" * 64)
    return path, f"diff --git a/{path} b/{path}\n{header}GIT binary patch\n{hunks}"


def claimed(repo):
    _, client = new_agent("api-agent")
    Bead.objects.create(repository=repo, title="x", scope=["docs/**"])
    return client, client.post("claim").json()


@pytest.mark.parametrize("kind", ["literal", "delta", "reverse"])
def test_the_api_refuses_a_declared_giant_blob_with_413_naming_it(repo, kind):
    client, session = claimed(repo)
    path, patch = bomb(kind)
    response = client.post(f"sessions/{session['session']}/submit", {"patch": patch})
    assert response.status_code == 413, response.content
    detail = response.json()["detail"]
    assert path in detail and str(GIB) in detail and str(repo.max_blob_bytes) in detail
    assert Session.objects.get(pk=session["session"]).status == "claimed"


def test_the_lead_refuses_a_declared_giant_blob_before_git_reads_it(repo, agent, rq_redis):
    """A patch that reaches the lead without the API (a session's own)."""
    path, patch = bomb("literal")
    bead = Bead.objects.create(repository=repo, title="x", scope=["docs/**"])
    sub = submit(bead, agent, patch, head(repo))
    run_lead(repo)
    assert outcome(sub) == ("rejected", "open")
    apply = GateResult.objects.get(submission=sub, gate="apply")
    assert f"{path}: a binary hunk declares {GIB} bytes" in apply.detail


def objects_in(repo) -> set[str]:
    """Every object id in the canonical store, loose or packed."""
    done = subprocess.run(
        ["git", "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"],
        cwd=repo.canonical_path,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def content(n: int) -> bytes:
    return hashlib.sha256(str(n).encode()).digest() * 100  # 3200 bytes of its own


def test_a_refused_patch_leaves_nothing_in_the_canonical_store(repo, agent, rq_redis):
    before = objects_in(repo)
    base, patch = binary_patch(repo, files={"docs/refused.bin": content(1)})
    bead = Bead.objects.create(repository=repo, title="x", scope=["src/**"])  # not docs/
    sub = submit(bead, agent, patch, base)
    run_lead(repo)
    assert outcome(sub) == ("rejected", "open")
    assert GateResult.objects.get(submission=sub, gate="apply").passed is True  # git built it
    assert objects_in(repo) == before
    base, patch = binary_patch(repo, files={"docs/landed.bin": content(2)})
    bead = Bead.objects.create(repository=repo, title="y", scope=["docs/**"])
    sub = submit(bead, agent, patch, base)
    run_lead(repo)
    assert outcome(sub) == ("committed", "closed"), sub.reason
    assert blob_id(content(2)) in objects_in(repo) - before
    assert blob_id(content(1)) not in objects_in(repo)
    fsck = subprocess.run(["git", "fsck", "--strict"], cwd=repo.canonical_path, capture_output=True)
    assert fsck.returncode == 0, fsck.stderr


def test_in_a_train_only_the_refused_members_objects_are_dropped(repo, agent, rq_redis):
    base = head(repo)
    subs = []
    for n, scope in enumerate(["docs/**", "src/**", "docs/**"]):
        _, patch = binary_patch(repo, files={f"docs/{n}.bin": content(10 + n)})
        bead = Bead.objects.create(repository=repo, title=f"b{n}", scope=[scope])
        subs.append(submit(bead, agent, patch, base))
    run_lead(repo)
    assert [outcome(sub)[0] for sub in subs] == ["committed", "rejected", "committed"]
    stored = objects_in(repo)
    assert blob_id(content(10)) in stored and blob_id(content(12)) in stored
    assert blob_id(content(11)) not in stored
    tree = git(repo.canonical_path, "ls-tree", "-r", "--name-only", repo.branch)
    assert "docs/0.bin" in tree and "docs/2.bin" in tree and "docs/1.bin" not in tree


def test_git_reading_a_patch_has_its_memory_capped(repo, agent, rq_redis, settings):
    """Under the declared cap (raised here) but over git's memory: git stops,
    in the API's check and in the lead, instead of taking what it is told."""
    settings.GIT_MEMORY_MB = 16
    repo.max_blob_bytes = repo.max_total_bytes = 100_000_000
    repo.save()
    base, patch = make_patch(repo, {"docs/small.md": "small\n"})
    _, big = binary_patch(repo, files={"docs/zeros.bin": b"\0" * 40_000_000})
    assert len(big) < 1_000_000  # 40 MB in a few hundred KB of patch
    client, session = claimed(repo)
    response = client.post(f"sessions/{session['session']}/submit", {"patch": big})
    assert response.status_code == 400, response.content
    assert "memory" in response.json()["detail"].lower()
    bead = Bead.objects.create(repository=repo, title="x", scope=["docs/**"])
    sub = submit(bead, agent, big, base)
    run_lead(repo)
    assert outcome(sub) == ("rejected", "open")
    assert "memory" in sub.reason.lower()
    bead = Bead.objects.create(repository=repo, title="y", scope=["docs/**"])
    sub = submit(bead, agent, patch, base)  # what fits lands as ever
    run_lead(repo)
    assert outcome(sub) == ("committed", "closed"), sub.reason


def test_a_quarantine_left_by_a_lead_that_died_is_swept(repo, agent, rq_redis):
    gone = subprocess.Popen(["true"])
    gone.wait()
    left = repo.canonical_path / "corral-quarantine" / f"{socket.gethostname()}-{gone.pid}"
    (left / "ab").mkdir(parents=True)
    (left / "ab" / ("c" * 38)).write_bytes(b"what a dead lead held")
    base, patch = make_patch(repo, {"docs/new.md": "new\n"})
    bead = Bead.objects.create(repository=repo, title="x", scope=["docs/**"])
    sub = submit(bead, agent, patch, base)
    run_lead(repo)
    assert outcome(sub) == ("committed", "closed"), sub.reason
    assert not left.exists()
    mine = repo.canonical_path / "corral-quarantine" / f"{socket.gethostname()}-{os.getpid()}"
    assert not [path for path in mine.rglob("*") if not path.is_dir()]  # moved out, or gone

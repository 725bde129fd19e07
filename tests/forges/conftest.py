import pytest

from tests.factories import git
from tests.forges.server import FakeForge
from workspace.forges import http


@pytest.fixture
def upstream(tmp_path):
    """A bare repository standing in for the forge's git side, with a `main`."""
    work = tmp_path / "seed"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "README.md").write_text("# app\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    bare = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


@pytest.fixture(params=["github", "gitlab", "gitea"])
def forge(request, upstream):
    """A fake forge of each kind; the test fails if any request or response it
    saw did not match the forge's description."""
    http.forget_limits()
    fake = FakeForge(request.param, upstream).start()
    yield fake
    fake.stop()
    http.forget_limits()
    assert fake.problems == [], "requests or responses off the description"

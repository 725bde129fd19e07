"""The demo's trap: demo-api's and demo-infra's checks want every module in
jobs/ to name its owner on its first line. The demo agent on api-q7jb does not
know and is refused; the refusal becomes a learning the run approves as the
demo; api-q7jb's retry and then infra-r2ow, in another repository, are given
it, and infra-r2ow lands on its first try. The pages show the chain."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils.html import escape

from agents.models import Session
from beads.models import Bead
from corral_client import demo_agent
from knowledge.models import Injection, Learning
from tests.factories import git

TRAPPED, AVOIDS = "api-q7jb", "infra-r2ow"
HEADER = "# owner: items-team"


@pytest.fixture
def only_the_trap(db, settings, tmp_path):
    """The demo seeded, with every other open bead deferred: the run drives these two."""
    settings.CORRAL_HOME = tmp_path / "home"
    call_command("demo", stdout=StringIO())
    others = Bead.objects.filter(status=Bead.Status.OPEN).exclude(pk__in=[TRAPPED, AVOIDS])
    others.update(status=Bead.Status.DEFERRED)


def drive() -> str:
    out = StringIO()
    call_command("demo", "--run", stdout=out)
    return out.getvalue()


def log(session: Session) -> str:
    return "".join(session.log_chunks.order_by("seq").values_list("text", flat=True))


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("only_the_trap")
@pytest.mark.slow
def test_a_learning_from_a_refusal_lets_another_repository_land_first_try(rq_redis, client, viewer):
    out = drive()
    assert f"{TRAPPED} was refused by the lead: check gate" in out
    assert "Landed 2 bead(s)" in out

    trapped = Bead.objects.get(pk=TRAPPED)
    first, retry = trapped.sessions.order_by("created_at")
    assert 'every module in jobs/ must start with the line "# owner: items-team"' in (
        first.submission.reason
    )
    lesson = Learning.objects.get(source_bead=trapped)
    assert lesson.status == Learning.Status.APPROVED and lesson.source_session == first
    assert lesson.title.startswith("check gate: AssertionError: jobs/report_items.py: every module")
    assert f'approving learning #{lesson.pk} "{lesson.title}" as the demo' in out
    assert not first.injections.exists()  # the first agent was told nothing
    assert retry.injections.get().learning == lesson
    assert f'followed a learning: "{HEADER}" first in jobs/report_items.py' in log(retry)

    avoids = Bead.objects.get(pk=AVOIDS)
    assert avoids.status == Bead.Status.CLOSED and avoids.repository.slug == "demo-infra"
    (session,) = avoids.sessions.all()
    assert session.status == Session.Status.SUCCEEDED
    assert session.submission.status == "committed"
    injection = session.injections.get()
    assert injection.learning == lesson and injection.outcome == Injection.Outcome.LANDED
    repo = avoids.repository
    landed = git(repo.canonical_path, "show", f"{avoids.commit_sha}:jobs/prune_releases.py")
    assert landed.splitlines()[0] == HEADER

    lesson.refresh_from_db()
    assert lesson.helpful == 2  # the retry and infra-r2ow both landed with it

    # The chain on the pages: the learning's source and where it went; the
    # session's learning, where it came from, and its first-try landing.
    client.force_login(viewer)
    page = client.get(session.get_absolute_url()).content.decode()
    assert escape(lesson.title) in page and "Landed on the first try" in page
    assert "learned from" in page and f">{TRAPPED}<" in page
    page = client.get(lesson.get_absolute_url()).content.decode()
    assert "First from bead" in page and TRAPPED in page
    assert AVOIDS in page and "Landed on the first try" in page


def pack(tmp_path, context: str) -> None:
    (tmp_path / ".agents").mkdir()
    (tmp_path / ".agents" / "context.md").write_text(context)
    bead = {"id": "x-1", "title": "A job", "description": "```corral write jobs/a.py\nA = 1\n```\n"}
    (tmp_path / ".agents" / "bead.json").write_text(json.dumps(bead))


RULE = f'AssertionError: jobs/b.py: every module in jobs/ must start with the line "{HEADER}"\n'


def test_the_demo_agent_follows_a_header_learning_from_its_pack(tmp_path):
    pack(tmp_path, f"# A job\n\n## Learnings from earlier work\n\n### check gate\n\n{RULE}")
    assert demo_agent.main(tmp_path) == 0
    assert (tmp_path / "jobs" / "a.py").read_text() == f"{HEADER}\nA = 1\n"


def test_the_demo_agent_ignores_the_rule_outside_its_learnings(tmp_path):
    pack(tmp_path, f"# A job\n\n## Why the last attempt failed\n\n{RULE}")
    assert demo_agent.main(tmp_path) == 0
    assert (tmp_path / "jobs" / "a.py").read_text() == "A = 1\n"

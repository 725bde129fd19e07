"""The `corral` command with a person's token, run for real against a live
server, as a team's CI would: beads, plans and reviews."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agents.models import Agent
from beads.models import Bead, Dependency, Plan
from tests.factories import land, run_lead
from workspace.tokens import PersonToken

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def corral(live_server, user, tmp_path):
    """Run `corral ARGS…` in a fresh process as the operator alice (her token)."""
    token = PersonToken.issue(user, "CI").plain_token

    def run(*args, **env):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        environ.update(PYTHONPATH=str(ROOT), CORRAL_URL=live_server.url, CORRAL_TOKEN=token)
        environ.update(env)
        return subprocess.run(
            [sys.executable, "-m", "corral_client.cli", *args],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def ok(done):
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.strip()


def refused(done, says):
    """Failed with exactly one `corral: …` line on stderr that says why."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("corral: "), done.stderr
    assert says in lines[0], lines[0]
    return lines[0]


def test_a_bead_is_filed_edited_and_closed(repo, corral, user):
    bead_id = ok(corral("bead", "new", "Add a CLI", "--repo", repo.slug, "--scope", "src/**"))
    bead = Bead.objects.get(pk=bead_id)
    assert (bead.title, bead.scope, bead.filed_by, bead.status) == (
        "Add a CLI",
        ["src/**"],
        user,
        "open",
    )
    seen = json.loads(ok(corral("show", bead_id, "--json")))["updated_at"]
    out = ok(corral("bead", "edit", bead_id, "--title", "Add the CLI", "--updated-at", seen))
    assert out.startswith(f"edited {bead_id} (version ")
    stale = corral("bead", "edit", bead_id, "--priority", "0", "--updated-at", seen)
    refused(stale, "changed since the version you read (now ")
    refused(corral("bead", "edit", bead_id), "nothing to change")

    assert (
        ok(corral("bead", "close", bead_id, "--reason", "shipped")) == f"closed {bead_id}: shipped"
    )
    refused(corral("bead", "close", bead_id), "is closed: it cannot be closed. (HTTP 409)")
    bead.refresh_from_db()
    assert (bead.title, bead.priority, bead.status) == ("Add the CLI", 2, "closed")


def test_a_plan_is_made_and_activated(repo, corral):
    a, b, c = (Bead.objects.create(repository=repo, title=t) for t in "ABC")
    Dependency.objects.create(issue=b, depends_on=a, type="blocks")
    out = ok(corral("plan", "new", "Release", "--beads", a.pk, b.pk, "--agents", "2"))
    plan = Plan.objects.get(name="Release")
    assert out.splitlines() == [
        f"plan {plan.pk} (draft): Release, 2 wave(s)",
        f"  wave 1: {a.pk}",
        f"  wave 2: {b.pk}",
    ]
    made = json.loads(
        ok(corral("plan", "new", "By hand", "--wave", c.pk, "--wave", a.pk, "--json"))
    )
    assert made["waves"] == [[c.pk], [a.pk]]
    assert ok(corral("plan", "activate", str(plan.pk))).startswith(f"plan {plan.pk} (active)")
    refused(corral("plan", "activate", str(made["id"])), "Already in another active plan")
    refused(corral("plan", "new", "Nothing"), "give --beads")
    plan.refresh_from_db()
    assert plan.status == "active"


def test_reviews_are_listed_and_approved(repo, corral, rq_redis):
    repo.review_mode = "human"
    repo.save()
    agent = Agent.objects.create(name="worker", preset="shell")
    bead, sub = land(repo, agent, {"a.txt": "1\n"}, title="Write a")
    assert ok(corral("review", "list")) == "nothing awaits review"
    run_lead(repo)

    assert ok(corral("review", "list")) == f"{sub.pk}  {repo.slug}  {bead.pk}  worker  Write a"
    listed = json.loads(ok(corral("review", "list", "--json", "--repo", repo.slug)))
    assert [r["id"] for r in listed] == [sub.pk]
    out = ok(corral("review", "approve", str(sub.pk)))
    assert out == f"approved submission {sub.pk} ({bead.pk}): approved"
    refused(corral("review", "reject", str(sub.pk)), "no longer waiting for review")
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed" and bead.commit_sha


def test_a_viewers_or_a_revoked_token_is_refused_in_one_line(repo, corral, viewer):
    viewers = PersonToken.issue(viewer, "read-only").plain_token
    assert ok(corral("ready", CORRAL_TOKEN=viewers)) == "nothing is ready"
    refused(
        corral("bead", "new", "Nope", "--repo", repo.slug, CORRAL_TOKEN=viewers),
        "needs the operator role",
    )
    PersonToken.objects.get(name="read-only").revoke()
    refused(corral("ready", CORRAL_TOKEN=viewers), "HTTP 401")
    refused(corral("claim", "--dir", "w"), "Only an agent can do this")
    assert not Bead.objects.exists()

"""A page per bead: fields, dependencies both ways, the hook's reason, the
timeline from real sessions, submissions, commits and reverts; comments from
people (the page), agents (the API and `corral comment`) into the context pack."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from agents.jobs import revert
from agents.models import Agent, Budget, Session
from agents.models.usage import Counts, TokenUsage
from agents.moves import outcomes
from beads import jsonl
from beads.models import Bead, Comment, Dependency, Plan, Wave, WaveBead
from knowledge import inject
from tests.factories import land, run_lead

ROOT = Path(__file__).resolve().parents[2]


def page(client, bead):
    response = client.get(f"/beads/{bead.id}/")
    assert response.status_code == 200
    return response.content.decode()


def test_every_field_and_both_directions_of_dependencies_are_shown(logged_in, repo, make_repo):
    other = make_repo("other")
    blocker = Bead.objects.create(repository=other, title="Build the API")
    bead = Bead.objects.create(
        repository=repo,
        title="Use the API",
        description="Call it from the app.",
        design="A thin client.",
        acceptance_criteria="The app shows data.",
        notes="Ask first.",
        priority=1,
        labels=["client"],
        scope=["src/**"],
        time_limit_s=600,
    )
    later = Bead.objects.create(repository=repo, title="Polish")
    Dependency.objects.create(issue=bead, depends_on=blocker)
    Dependency.objects.create(issue=later, depends_on=bead)
    html = page(logged_in, bead)
    for text in ["Call it from the app.", "A thin client.", "The app shows data.", "Ask first."]:
        assert text in html
    assert "P1" in html and "client" in html and "<code>src/**</code>" in html and "10:00" in html
    waits, waited = html.split('id="dependencies"')[1].split("Waited for by")
    assert blocker.id in waits and "Open" in waits and later.id in waited


def test_the_hook_says_why_a_bead_is_or_is_not_ready(logged_in, repo):
    blocker = Bead.objects.create(repository=repo, title="first", scope=["a"])
    bead = Bead.objects.create(repository=repo, title="second", scope=["b"])
    Dependency.objects.create(issue=bead, depends_on=blocker)
    assert f"bead {bead.id} waits for {blocker.id}" in page(logged_in, bead)
    assert 'data-ready="true"' in page(logged_in, blocker)
    blocker.close()
    plan = Plan.objects.create(workspace=repo.workspace, name="Spring")
    first, second = (
        Wave.objects.create(plan=plan, number=1),
        Wave.objects.create(plan=plan, number=2),
    )
    WaveBead.objects.create(wave=first, bead=Bead.objects.create(repository=repo, title="x"))
    WaveBead.objects.create(wave=second, bead=bead)
    plan.activate()
    html = page(logged_in, bead)
    assert 'data-ready="false"' in html and "in wave 2 of plan &#x27;Spring&#x27;" in html


@pytest.mark.django_db(transaction=True)  # the lead's jobs are enqueued on commit
def test_the_timeline_holds_sessions_gates_commits_and_reverts(logged_in, repo, agent, rq_redis):
    bead, sub = land(repo, agent, {"src/app.py": "print('new')\n"}, title="Change app")
    run_lead(repo)
    outcomes.request_bead_revert(bead)
    run_lead(repo)
    revert.revert(bead.pk)
    html = page(logged_in, bead)
    timeline = html.split('id="timeline"')[1].split('id="comments"')[0]
    kinds = [part.split('"')[0] for part in timeline.split('data-kind="')[1:]]
    assert kinds[0] == "filed" and {"session", "submission", "commit", "revert"} <= set(kinds)
    assert f"Session by {agent.name}" in timeline and f"/submissions/{sub.pk}/" in timeline
    assert 'class="gate pass"' in timeline and "Committed: Change app" in timeline
    assert "Its commit was reverted" in html  # the last failure


def test_a_timed_out_session_names_the_limit_that_stopped_it(logged_in, repo, agent):
    bead = Bead.objects.create(repository=repo, title="slow", time_limit_s=120)
    session = Session.objects.create(agent=agent, bead=bead, status="running")
    session.end(Session.Status.TIMED_OUT)
    assert "Stopped by its time limit (2 min)." in page(logged_in, bead)


def test_the_bead_page_shows_its_sessions_usage_and_what_is_left_of_its_budget(
    logged_in, repo, agent
):
    bead = Bead.objects.create(repository=repo, title="costly")
    assert "No tokens reported." in page(logged_in, bead)
    assert "No token budget for this bead." in page(logged_in, bead)
    for _ in range(2):  # two sessions count together
        session = Session.objects.create(agent=agent, bead=bead, status="failed")
        TokenUsage.put(
            session.pk, "codex", "gpt-5", Counts(input=1000, output=200, cache_read=10**5)
        )
    Budget.objects.create(bead=bead, tokens=5000)
    usage = page(logged_in, bead).split('id="bead-usage"')[1].split("</section>")[0]
    assert 'data-model="gpt-5"' in usage and 'class="n total">202,400<' in usage
    assert "Budget: 2,600 of 5,000 tokens left" in usage  # cache reads are not counted
    Budget.objects.filter(bead=bead).update(tokens=2000)
    assert "Budget: 0 of 2,000 tokens left: spent" in page(logged_in, bead)


def test_bead_links_lead_to_the_bead_page(logged_in, repo):
    bead = Bead.objects.create(repository=repo, title="linked")
    html = logged_in.get(f"/repos/{repo.slug}/").content.decode()
    assert f'href="/beads/{bead.id}/"' in html


def test_a_person_comments_and_an_empty_comment_is_refused_keeping_nothing_lost(logged_in, repo):
    bead = Bead.objects.create(repository=repo, title="talk")
    response = logged_in.post(f"/beads/{bead.id}/comment", {"text": "Mind the cache."})
    assert response.status_code == 302
    assert "Mind the cache." in page(logged_in, bead) and "alice" in page(logged_in, bead)
    response = logged_in.post(f"/beads/{bead.id}/comment", {"text": "bad \x07 bell"})
    assert response.status_code == 400
    assert "U+0007" in response.content.decode() and "bad \x07 bell" in response.content.decode()
    assert Comment.objects.count() == 1


def test_a_viewer_reads_but_may_not_comment(client, viewer, repo):
    bead = Bead.objects.create(repository=repo, title="talk")
    client.force_login(viewer)
    assert "comment-form" not in page(client, bead)
    assert client.post(f"/beads/{bead.id}/comment", {"text": "hi"}).status_code == 403
    assert not Comment.objects.exists()


def api_post(token, path, body):
    return Client().post(
        f"/api/v1/{path}",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def external_agent(name):
    agent = Agent(name=name, preset="shell", internal=False)
    agent.save()
    return agent


def test_an_agent_comments_only_on_its_own_live_sessions_bead(repo):
    mine, theirs = external_agent("mine"), external_agent("theirs")
    bead = Bead.objects.create(repository=repo, title="work")
    session = Session.objects.create(agent=mine, bead=bead, status="running")
    response = api_post(mine.plain_token, f"sessions/{session.pk}/comments", {"text": "Half done."})
    assert response.status_code == 201 and response.json()["author"] == "agent mine"
    other = api_post(theirs.plain_token, f"sessions/{session.pk}/comments", {"text": "x"})
    assert other.status_code == 403
    assert (
        api_post(mine.plain_token, f"sessions/{session.pk}/comments", {"text": ""}).status_code
        == 422
    )
    session.end(Session.Status.FAILED)
    ended = api_post(mine.plain_token, f"sessions/{session.pk}/comments", {"text": "late"})
    assert ended.status_code == 409
    assert list(bead.comments.values_list("text", flat=True)) == ["Half done."]
    listed = Client().get(
        f"/api/v1/beads/{bead.id}/comments",
        headers={"Authorization": f"Bearer {theirs.plain_token}"},
    )
    assert [c["text"] for c in listed.json()] == ["Half done."]


def test_recent_comments_go_into_the_context_pack(repo, agent, user):
    bead = Bead.objects.create(repository=repo, title="work")
    for n in range(7):
        Comment.add(bead, f"note {n}", person=user)
    session = Session.objects.create(agent=agent, bead=bead, status="running")
    context = inject.render_context(session, 10_000)
    section = context.split("## Recent comments")[1]
    assert "note 2" in section and "note 6" in section and "note 1" not in section
    assert section.index("note 2") < section.index("note 6")


@pytest.mark.django_db(transaction=True)
def test_corral_comment_posts_for_the_session(live_server, repo):
    agent = external_agent("cli-agent")
    bead = Bead.objects.create(repository=repo, title="work")
    session = Session.objects.create(agent=agent, bead=bead, status="running")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    environ.update(
        PYTHONPATH=str(ROOT),
        CORRAL_URL=live_server.url,
        CORRAL_TOKEN=agent.plain_token,
        CORRAL_SESSION=str(session.pk),
    )
    run = [sys.executable, "-m", "corral_client.cli", "comment"]
    done = subprocess.run(
        [*run, "Found a flaky test."], env=environ, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(f"commented on {bead.id}")
    bad = subprocess.run([*run, ""], env=environ, capture_output=True, text=True)
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
    assert list(bead.comments.values_list("agent", "text")) == [
        ("cli-agent", "Found a flaky test.")
    ]


def test_the_filed_line_says_who_or_what_filed_the_bead(logged_in, repo, user):
    by_person = Bead.objects.create(repository=repo, title="By a person", filed_by=user)
    by_agent = Bead.objects.create(repository=repo, title="By an agent", filed_by_agent="agent-7")
    records = [
        {"id": "app-bd01", "title": "From bd", "created_by": "dana"},
        {"id": "app-bd02", "title": "From bd, nobody named"},
    ]
    from_bd, unnamed = jsonl.import_records(records, repo).beads
    before = Bead.objects.create(repository=repo, title="Filed before Corral kept it")
    expected = {
        by_person: "alice",
        by_agent: "agent agent-7",
        from_bd: "a bd import (created by dana in bd)",
        unnamed: "a bd import",
        before: "not recorded",
    }
    for bead, filer in expected.items():
        html = page(logged_in, bead)
        assert re.search(rf'<dd id="filed">.* by {re.escape(filer)}</dd>', html), (filer, html)
        assert f"Filed by {filer}" in html  # the timeline's first event

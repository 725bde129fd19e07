"""Back-pressure from review: a repository with more submissions awaiting a
person than its limit (CORRAL_REVIEW_LIMIT, or its own review_limit) gets no
new sessions. The claim and dispatch skip it; `GET ready`, `GET ready/waiting`,
the hook page and the plan page say "waiting for review capacity"; a plan's
time to finish counts the median review wait."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from agents.models import Agent, Session, Submission
from agents.moves import lifecycle
from agents.reports import plan_status
from beads import hook, plans
from beads.models import Bead

WORDS = "waiting for review capacity"


def awaiting(repo, agent, n):
    """n submissions of `repo` awaiting a person."""
    for i in range(n):
        bead = Bead.objects.create(repository=repo, title=f"done {i}", status="review")
        session = Session.objects.create(agent=agent, bead=bead, status="submitted")
        Submission.objects.create(
            session=session, repository=repo, bead=bead, status="awaiting_review"
        )


@pytest.fixture
def limited(settings, repo, agent):
    settings.REVIEW_LIMIT = 2
    repo.max_agents = 10
    repo.save()
    return Bead.objects.create(repository=repo, title="next work", scope=["src/**"])


def test_a_repository_over_its_review_limit_gets_no_new_sessions(repo, agent, limited):
    awaiting(repo, agent, 3)  # more than 2
    assert hook.ready_rows(10, repository=repo) == []
    with pytest.raises(hook.NothingReady, match=f"{WORDS}: 3 submissions await a person"):
        lifecycle.claim(agent, repository=repo)
    with pytest.raises(hook.NotClaimable, match=WORDS):
        lifecycle.claim(agent, bead=limited)
    assert Bead.objects.get(pk=limited.pk).status == "open"


def test_at_its_limit_it_still_takes_work(repo, agent, limited):
    awaiting(repo, agent, 2)  # not more than 2
    assert lifecycle.claim(agent, repository=repo).bead_id == limited.id


def test_a_review_done_frees_the_repository(repo, agent, limited):
    awaiting(repo, agent, 3)
    Submission.objects.filter(pk=Submission.objects.first().pk).update(status="approved")
    assert lifecycle.claim(agent, repository=repo).bead_id == limited.id


def test_dispatch_passes_over_a_held_repository(repo, make_repo, agent, limited):
    other = make_repo("other")
    elsewhere = Bead.objects.create(repository=other, title="other work", scope=["src/**"])
    awaiting(repo, agent, 3)
    # What dispatch asks: a claim among the repositories it may start work in.
    session = lifecycle.claim(agent, repositories=[repo.pk, other.pk])
    assert session.bead_id == elsewhere.id
    with pytest.raises(hook.NothingReady):
        lifecycle.claim(agent, repositories=[repo.pk, other.pk])


def test_a_repository_limit_overrides_the_setting_and_zero_means_none(repo, agent, limited):
    awaiting(repo, agent, 3)
    repo.review_limit = 5
    repo.save()
    assert [row["id"] for row in hook.ready_rows(10, repository=repo)] == [limited.id]
    repo.review_limit = 1
    repo.save()
    assert hook.ready_rows(10, repository=repo) == []
    repo.review_limit = 0  # no limit
    repo.save()
    assert lifecycle.claim(agent, repository=repo).bead_id == limited.id


def test_the_api_says_why(repo, agent, limited):
    awaiting(repo, agent, 3)
    outside = Agent(name="outside", preset="shell", internal=False)
    outside.save()
    api = Client(headers={"Authorization": f"Bearer {outside.plain_token}"})
    ready = api.get("/api/v1/ready", {"repo": repo.slug})
    assert ready.json() == [] and WORDS in ready.headers["X-Corral-Held"]
    waiting = api.get("/api/v1/ready/waiting", {"repo": repo.slug}).json()
    assert [(w["id"], w["not_before"]) for w in waiting] == [(limited.id, None)]
    assert waiting[0]["waiting"].startswith(f"{WORDS}: 3 submissions")
    claim = api.post("/api/v1/claim", {"repo": repo.slug}, content_type="application/json")
    assert claim.status_code == 409 and WORDS in claim.json()["detail"]


def test_the_hook_page_says_waiting_for_review_capacity(logged_in, repo, agent, limited):
    html = logged_in.get("/hook/").content.decode()
    assert "Waiting for review capacity" not in html
    awaiting(repo, agent, 3)
    html = logged_in.get("/hook/").content.decode()
    assert "Waiting for review capacity" in html and "3 submissions await a person" in html


def test_the_plan_page_says_it_and_its_time_to_finish_counts_review(
    logged_in, repo, agent, limited
):
    repo.review_mode = "human"
    repo.save()
    plan = plans.start(repo.workspace, "p", [limited], 4)
    plan.activate()
    now = timezone.now()
    earlier = Bead.objects.create(repository=repo, title="earlier", status="closed")
    done = Session.objects.create(
        agent=agent, bead=earlier, status="succeeded",
        started_at=now - timedelta(seconds=60), ended_at=now,
    )  # fmt: skip
    Submission.objects.create(
        session=done, repository=repo, bead=earlier, status="committed",
        started_at=now - timedelta(seconds=600), reviewed_at=now,
    )  # fmt: skip
    status = plan_status.status_of(plan, [[limited]])
    assert status.median_s == 60 and status.review_s == 600
    assert status.eta_s == 660  # one round: a session and a review

    awaiting(repo, agent, 3)
    html = logged_in.get(f"/plans/{plan.pk}/").content.decode()
    assert WORDS in html.split('id="holds"')[1]
    assert "median review wait 600 s" in html

"""Problems surfaced: stalled sessions (quiet and no heartbeat; not a quiet
agent that heartbeats), stuck lead queues, churning beads; the page, its
actions and the overview's count."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from agents.models import Session, Submission
from agents.moves import lifecycle
from agents.reports import problems
from beads.models import Bead
from tests.factories import make_patch, program_agent, run_in_thread, submit, wait_for
from workspace.audit import AuditEntry

HOUR_AGO = timezone.now() - timedelta(hours=1)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_silent_agent_that_heartbeats_is_not_stalled_one_that_does_not_is(
    repo, live_server, settings, rq_redis
):
    settings.CORRAL_URL = live_server.url
    settings.STALL_SECONDS = 3  # six heartbeats' worth: no false alarm on a busy machine
    settings.WATCH_INTERVAL_SECONDS = 0.2
    settings.KILL_GRACE_SECONDS = 1
    thinker = program_agent("quiet_thinker", "10")
    sleeper = program_agent("sleeper", "60")
    sessions = {}
    threads = []
    for agent in (thinker, sleeper):
        bead = Bead.objects.create(repository=repo, title=agent.name, scope=["src/**"])
        session = lifecycle.claim(agent, bead=bead)
        session.queue()
        sessions[agent.name] = session
        threads.append(run_in_thread(session.pk))
    try:
        wait_for(lambda: Session.objects.filter(status="running").count() == 2)
        wait_for(lambda: problems.stalled(), timeout=15)
        for _ in range(10):  # over two seconds, past the stall time, while both run
            stalled = {s.pk for s in problems.stalled()}
            assert stalled == {sessions[sleeper.name].pk}
            assert Session.objects.get(pk=sessions[thinker.name].pk).status == "running"
            time.sleep(0.25)
    finally:
        lifecycle.cancel(Session.objects.get(pk=sessions[sleeper.name].pk), by="the test")
        for thread in threads:
            thread.join(timeout=30)
    thought = Session.objects.get(pk=sessions[thinker.name].pk)
    assert thought.status == "submitted" and thought.changed_files == ["src/thought.py"]
    assert problems.stalled() == []


def test_a_lost_session_is_not_called_stalled(repo, agent, settings):
    settings.STALL_SECONDS = 60
    bead = Bead.objects.create(repository=repo, title="Gone")
    session = Session.objects.create(
        agent=agent, bead=bead, status="running", started_at=HOUR_AGO, lease_expires_at=HOUR_AGO
    )
    assert problems.stalled() == []  # its lease expired: lost, reconcile's business
    Session.objects.filter(pk=session.pk).update(
        lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert problems.stalled() == [session]


def queued_long_ago(repo, agent, title):
    bead = Bead.objects.create(repository=repo, title=title)
    base, patch = make_patch(repo, {f"{title}.txt": "x\n"})
    sub = submit(bead, agent, patch, base)
    Submission.objects.filter(pk=sub.pk).update(queued_at=HOUR_AGO)
    return sub


def test_a_lead_queue_that_has_not_moved_is_stuck(make_repo, agent, settings):
    settings.STUCK_SECONDS = 600
    still, moving, waiting_for_people = make_repo("still"), make_repo("moving"), make_repo("human")
    queued_long_ago(still, agent, "a")
    queued_long_ago(moving, agent, "b")
    done = queued_long_ago(moving, agent, "c")
    Submission.objects.filter(pk=done.pk).update(status="committed", finished_at=timezone.now())
    review = queued_long_ago(waiting_for_people, agent, "d")
    Submission.objects.filter(pk=review.pk).update(status="awaiting_review")
    assert [r.slug for r in problems.stuck()] == ["still"]
    assert problems.stuck()[0].waiting == 1


def test_a_bead_refused_again_and_again_is_churning(repo, agent, settings):
    settings.CHURN_REFUSALS = 3
    churner = Bead.objects.create(repository=repo, title="Again")
    calm = Bead.objects.create(repository=repo, title="Once")
    for bead, refusals in ((churner, 3), (calm, 2)):
        for n in range(refusals):
            session = Session.objects.create(agent=agent, bead=bead, status="failed")
            Submission.objects.create(
                session=session, repository=repo, bead=bead, status=("rejected", "conflict")[n % 2]
            )
    (found,) = problems.churning()
    assert found == churner and found.refusals == 3
    assert found.latest_session == Session.objects.filter(bead=churner).order_by("-created_at")[0]
    Bead.objects.filter(pk=churner.pk).update(status="closed")
    assert problems.churning() == []


def test_the_problems_page_lists_each_with_its_action_and_the_overview_counts(
    logged_in, repo, agent, settings, rq_redis
):
    settings.STALL_SECONDS = 60
    settings.STUCK_SECONDS = 60
    settings.CHURN_REFUSALS = 1
    bead = Bead.objects.create(repository=repo, title="Quiet")
    quiet = Session.objects.create(
        agent=agent,
        bead=bead,
        status="running",
        started_at=HOUR_AGO,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    sub = queued_long_ago(repo, agent, "waiting")
    Submission.objects.filter(pk=sub.pk).update(status="rejected", finished_at=HOUR_AGO)
    queued_long_ago(repo, agent, "still-waiting")

    overview = logged_in.get("/").content.decode()
    assert "3 problems" in overview

    page = logged_in.get("/problems/").content.decode()
    assert f'action="/sessions/{quiet.pk}/cancel"' in page
    assert f'action="/problems/retry/{repo.slug}"' in page
    assert f'href="/sessions/{sub.session_id}/#log"' in page  # the churning bead's last log

    response = logged_in.post(f"/problems/retry/{repo.slug}")
    assert response.status_code == 302
    assert AuditEntry.objects.get(action="retry").target == repo.slug
    assert rq_redis.llen("rq:queue:lead") == 1  # a drain waits for the lead


def test_a_viewer_sees_problems_without_the_actions(client, viewer, repo):
    client.force_login(viewer)
    assert client.get("/problems/").status_code == 200
    assert client.post(f"/problems/retry/{repo.slug}").status_code == 403

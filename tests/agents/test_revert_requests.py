"""A revert asked for is written in the database before its job is enqueued: an
emptied Redis or a lead killed holding the job loses the job, not the request,
and reconcile() enqueues it again; the revert lands once and the request is done."""

import os
import signal
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import queues
from agents.jobs import reconcile, revert
from agents.models import RevertRequest, WorkerBeat
from agents.moves import changesets, outcomes
from beads.models import Bead
from tests.agents.test_changeset_crash import gating, reverts
from tests.agents.test_changesets import work
from tests.factories import commits, git, land, run_lead
from tests.procs import Running, wait_until
from tests.races import race

pytestmark = pytest.mark.django_db(transaction=True)


def landed(repo, agent, title="Change app"):
    bead, _ = land(repo, agent, {"src/app.py": "print('new')\n"}, title=title)
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed"
    return bead


def revert_commits(repo, sha):
    return git(repo.canonical_path, "log", "--format=%H", f"--grep=^Reverts: {sha}", repo.branch)


def pending():
    return list(RevertRequest.objects.filter(state="pending"))


def age_every_beat():
    """The beats of workers killed here, as old as a dead worker's after its time."""
    WorkerBeat.objects.update(beat_at=timezone.now() - timedelta(minutes=5))


@pytest.mark.slow
def test_a_bead_revert_survives_an_emptied_redis_and_lands_once(
    repo, agent, rq_redis, subprocess_env
):
    bead = landed(repo, agent)
    target, before = bead.commit_sha, commits(repo)
    assert outcomes.request_bead_revert(bead)
    [request] = pending()
    rq_redis.flushdb()  # Redis restarted empty between the request and its job
    assert reconcile.reconcile()["reverts"] == 1
    assert reconcile.reconcile()["reverts"] == 0  # its job waits: not queued twice
    lead = Running(["manage.py", "leadworker", repo.slug, "--burst"], subprocess_env)
    try:
        assert lead.wait(120) == 0, lead.output
    finally:
        lead.kill_group()
    bead.refresh_from_db()
    request.refresh_from_db()
    assert bead.status == "open" and commits(repo) == before + 1
    assert len(revert_commits(repo, target).split()) == 1
    assert request.state == "done" and request.done_at is not None
    assert reconcile.reconcile()["reverts"] == 0


@pytest.mark.slow
def test_a_change_set_revert_whose_lead_died_before_its_journal_lands_once(
    make_repo, agent, rq_redis, subprocess_env
):
    api, web = make_repo("api"), make_repo("web")
    changeset = gating(api, web, agent)
    work(api, web)
    changeset.refresh_from_db()
    assert changeset.status == "landed" and changesets.request_revert(changeset)
    crashing = Running(
        ["manage.py", "leadworker", api.slug, "--burst"],
        dict(subprocess_env, CORRAL_CHANGESET_CRASH_AT="1"),  # took the job, wrote nothing
    )
    try:
        assert crashing.wait(120) == -9, crashing.output
    finally:
        crashing.kill_group()
    assert not changeset.journal.filter(kind="revert").exists()
    assert not queues.job_missing(changesets.revert_job_id(changeset))  # "started", for ever
    age_every_beat()
    repaired = reconcile.reconcile()
    assert (repaired["abandoned jobs"], repaired["reverts"]) == (1, 1)
    again = Running(["manage.py", "leadworker", api.slug, "--burst"], subprocess_env)
    try:
        assert again.wait(120) == 0, again.output
    finally:
        again.kill_group()
    changeset.refresh_from_db()
    assert changeset.status == "reverted"
    assert (reverts(api, changeset), reverts(web, changeset)) == (1, 1)
    assert pending() == []


@pytest.mark.slow
def test_a_bead_revert_whose_lead_was_killed_holding_it_lands_once(
    repo, agent, rq_redis, subprocess_env
):
    bead = landed(repo, agent)
    target = bead.commit_sha
    with queues.repo_lock(repo):  # the revert job waits for the lock: taken, nothing written
        assert outcomes.request_bead_revert(bead)
        lead = Running(["manage.py", "leadworker", repo.slug], subprocess_env)
        try:
            job = queues.Job.fetch(queues.revert_job_id(bead.pk), connection=rq_redis)
            wait_until(lambda: job.get_status(refresh=True) == "started", what="the job taken")
            os.killpg(lead.proc.pid, signal.SIGKILL)
            lead.wait(10)
        finally:
            lead.kill_group()
    assert reconcile.reconcile()["reverts"] == 0  # its worker is not known dead yet
    age_every_beat()
    repaired = reconcile.reconcile()
    assert (repaired["dead workers"], repaired["abandoned jobs"], repaired["reverts"]) == (1, 1, 1)
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "open"
    assert len(revert_commits(repo, target).split()) == 1
    assert pending() == []


def test_asking_twice_before_the_job_runs_is_one_request_and_one_revert(repo, agent, rq_redis):
    bead = landed(repo, agent)
    before = commits(repo)
    assert outcomes.request_bead_revert(bead)
    assert outcomes.request_bead_revert(bead)
    assert len(pending()) == 1
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "open" and commits(repo) == before + 1
    assert pending() == [] and RevertRequest.objects.filter(state="done").count() == 1


def test_a_request_for_a_bead_reopened_meanwhile_is_done_with_nothing_reverted(
    repo, agent, rq_redis
):
    bead = landed(repo, agent)
    before = commits(repo)
    assert outcomes.request_bead_revert(bead)
    assert bead.reopen()  # a person reopened it before the lead got to the revert
    revert.revert(bead.pk)
    assert commits(repo) == before
    assert pending() == [] and RevertRequest.objects.get().state == "done"


def ask(bead_id):
    return outcomes.request_bead_revert(Bead.objects.get(pk=bead_id))


def finish(bead_id):
    return RevertRequest.finish_for(bead_id=bead_id)


def test_eight_people_asking_at_once_make_one_pending_request(repo, agent, rq_redis):
    bead = landed(repo, agent)
    assert race(ask, [(bead.pk,)] * 8) == [True] * 8
    assert len(pending()) == 1


def test_of_eight_finishing_one_request_at_once_exactly_one_finishes_it(repo, agent, rq_redis):
    bead = landed(repo, agent)
    assert outcomes.request_bead_revert(bead)
    assert sorted(race(finish, [(bead.pk,)] * 8)) == [0] * 7 + [1]
    assert pending() == []

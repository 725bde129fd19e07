"""Back off on repeated refusals: a bead sent back twice in a row for the same
reason waits (30 s, then 2 min, then 10 min) before the hook offers it again,
unless something changed: a comment, an approved learning, a dependency
landed, an edit. The hook page, the API and the bead page say why it waits."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent
from agents.moves import lifecycle
from beads import hook, moves
from beads.models import Bead, Comment, Dependency, failure_key
from knowledge.models import Learning
from tests.factories import land, make_patch, run_lead, submit
from tests.races import race

pytestmark = pytest.mark.django_db

# A check that fails the same way each time, as a test suite does: its timing
# and its scratch folder differ from run to run.
FAILING_CHECK = (
    "python3 -c \"import os, sys, time; print('FAIL: test_total (tests.test_items)'); "
    "print(os.getcwd()); print('Ran 3 tests in %.4fs' % (time.time() % 1)); sys.exit(1)\""
)


def refused_by_the_check(repo, agent, bead):
    base, patch = make_patch(repo, {"src/total.py": "TOTAL = 0\n"})
    submit(bead, agent, patch, base)
    run_lead(repo)
    bead.refresh_from_db()
    return bead


def ready_ids(repo):
    return [b.pk for b in hook.ready(repo)]


def sent_back(bead, reason, times=1):
    for _ in range(times):
        assert bead.start("a1")
        assert bead.send_back(reason)
    return bead


def seconds_left(bead):
    return (bead.not_before - timezone.now()).total_seconds()


@pytest.mark.django_db(transaction=True)  # the lead's queue is asked for on commit
def test_a_bead_refused_twice_by_the_same_failing_check_waits_unless_someone_comments(
    repo, agent, rq_redis, user
):
    repo.check_command = FAILING_CHECK
    repo.save()
    bead = Bead.objects.create(repository=repo, title="Sum the items", scope=["src/**"])
    refused_by_the_check(repo, agent, bead)
    assert (bead.status, bead.attempts, bead.not_before) == ("open", 1, None)
    assert ready_ids(repo) == [bead.pk]  # once is no pattern: offered again at once

    refused_by_the_check(repo, agent, bead)
    assert (bead.status, bead.attempts) == ("open", 2)
    assert 25 < seconds_left(bead) <= 30
    assert ready_ids(repo) == []
    assert [row["id"] for row in hook.ready_rows(10)] == []
    with pytest.raises(hook.NothingReady):
        lifecycle.claim(agent, repository=repo)
    assert "refused twice for the same reason: waits until" in hook.why_not_ready(bead)

    Comment.add(bead, "The total must skip archived items.", person=user)
    bead.refresh_from_db()
    assert bead.not_before is None
    assert ready_ids(repo) == [bead.pk]


def test_the_waits_grow_from_30_seconds_to_2_then_10_minutes(repo):
    bead = Bead.objects.create(repository=repo, title="Flaky")
    waits = []
    for n in range(5):
        sent_back(bead, f"check gate: Exit code 1.\nRan 4 tests in 0.{n}1s\nFAILED (failures=1)")
        waits.append(None if bead.not_before is None else round(seconds_left(bead), -1))
    assert waits == [None, 30, 120, 600, 600]
    assert bead.repeats == 4 and bead.attempts == 5
    assert "refused 5 times in a row for the same reason" in bead.waiting()


def test_a_different_reason_starts_over(repo):
    bead = Bead.objects.create(repository=repo, title="Two problems")
    sent_back(bead, "check gate: FAIL: test_total", times=2)
    assert bead.waits()
    bead.not_before = timezone.now() - timedelta(seconds=1)
    Bead.objects.filter(pk=bead.pk).update(not_before=bead.not_before)  # the wait is over
    assert ready_ids(repo) == [bead.pk]
    sent_back(bead, "check gate: FAIL: test_average")
    assert bead.not_before is None and bead.repeats == 0
    sent_back(bead, "check gate: FAIL: test_average")
    assert bead.waits() and bead.repeats == 1


def test_the_same_failure_is_known_whatever_its_timings_shas_and_scratch_folders():
    one = "check gate: /tmp/corral-check-k3jx_a9q/t.py:12 Ran 3 tests in 0.012s on 1a2b3c4d5e6f"
    two = "check gate: /tmp/corral-check-zzyxwvut/t.py:14 Ran 3 tests in 0.340s on 9f8e7d6c5b4a"
    assert failure_key(one) == failure_key(two)
    assert failure_key(one) != failure_key(one.replace("t.py", "u.py"))


def test_once_its_wait_is_over_the_bead_is_offered_and_a_claim_clears_it(repo):
    agent = Agent.objects.create(name="later", preset="shell", command=["true"])
    bead = sent_back(Bead.objects.create(repository=repo, title="Later"), "same", times=2)
    assert ready_ids(repo) == []
    Bead.objects.filter(pk=bead.pk).update(not_before=timezone.now() - timedelta(seconds=1))
    assert ready_ids(repo) == [bead.pk]
    assert [row["id"] for row in hook.ready_rows(5, repository=repo)] == [bead.pk]
    session = lifecycle.claim(agent, repository=repo)
    assert session.bead == bead
    bead.refresh_from_db()
    assert bead.not_before is None and bead.repeats == 1  # the streak is kept


# What changed lets it go sooner.


def waiting_bead(repo, title="Waits"):
    bead = sent_back(Bead.objects.create(repository=repo, title=title), "same reason", times=2)
    assert bead.waits()
    return bead


def still_waits(bead):
    bead.refresh_from_db()
    return bead.waits()


def test_an_approved_learning_of_its_repository_or_workspace_lets_it_go(repo, make_repo):
    other = make_repo("other")
    here, there = waiting_bead(repo, "here"), waiting_bead(other, "there")
    elsewhere = Learning.objects.create(
        workspace=repo.workspace, repository=other, title="Other's lesson", body="b"
    )
    assert elsewhere.approve()
    assert still_waits(here) and not still_waits(there)
    workspace_wide = Learning.objects.create(workspace=repo.workspace, title="All", body="b")
    assert workspace_wide.approve()
    assert not still_waits(here)
    assert not workspace_wide.approve()  # once: approved already


@pytest.mark.django_db(transaction=True)
def test_a_dependency_landing_lets_it_go(repo, agent, rq_redis):
    bead = waiting_bead(repo)
    blocker, submission = land(repo, agent, {"lib.txt": "1\n"}, title="The library")
    Dependency.objects.create(issue=bead, depends_on=blocker, type=Dependency.Type.BLOCKS)
    unrelated = waiting_bead(repo, "unrelated")
    run_lead(repo)
    blocker.refresh_from_db()
    assert blocker.status == "closed"
    assert not still_waits(bead) and still_waits(unrelated)
    assert bead.pk in ready_ids(repo)


def test_an_edit_lets_it_go_and_keeps_the_edit_forms_version(repo):
    bead = waiting_bead(repo)
    assert moves.edit(bead, bead.updated_at, {"description": "Skip archived items."}, [], None)
    assert not still_waits(bead)
    assert bead.description == "Skip archived items."


def test_a_comment_keeps_an_open_edit_forms_version(repo, user):
    bead = waiting_bead(repo)
    seen = bead.updated_at
    Comment.add(bead, "Try the other way.", person=user)
    assert not still_waits(bead)
    assert moves.edit(bead, seen, {"notes": "n"}, [], None)  # the comment did not bump it


def test_a_person_reopening_a_blocked_bead_lets_it_go(repo):
    bead = waiting_bead(repo)
    Bead.objects.filter(pk=bead.pk).update(status="blocked")
    assert moves.reopen(Bead.objects.get(pk=bead.pk))
    assert not still_waits(bead) and bead.repeats == 0


# Where people and agents read why.


def test_the_hook_page_the_api_and_the_bead_page_say_why_it_waits(repo, logged_in):
    bead = waiting_bead(repo, "Sum the items")
    until = f"{timezone.localtime(bead.not_before):%H:%M}"
    why = f"refused twice for the same reason: waits until {until}"
    hook_page = logged_in.get("/hook/").content.decode()
    assert f'data-waiting="{bead.pk}"' in hook_page and why in hook_page
    assert why in logged_in.get(f"/beads/{bead.pk}/").content.decode()

    agent = Agent.objects.create(name="asker", preset="shell", internal=False)
    api = Client(headers={"Authorization": f"Bearer {agent.plain_token}"})
    assert api.get("/api/v1/ready").json() == []
    [waiting] = api.get("/api/v1/ready/waiting", {"repo": repo.slug}).json()
    assert (waiting["id"], waiting["repo"], waiting["waiting"]) == (bead.pk, repo.slug, why)
    shown = api.get(f"/api/v1/beads/{bead.pk}").json()
    assert shown["waiting"] == why and shown["not_before"]
    refused = api.post("/api/v1/claim", {"bead": bead.pk}, content_type="application/json")
    assert refused.status_code == 409 and why in refused.json()["detail"]
    assert api.get("/api/v1/ready/waiting", {"limit": 0}).status_code == 422


def test_the_hook_pages_queries_do_not_grow_with_waiting_beads(repo, logged_in):
    waiting_bead(repo, "one")
    with CaptureQueriesContext(connection) as few:
        logged_in.get("/hook/")
    for n in range(5):
        waiting_bead(repo, f"more {n}")
    with CaptureQueriesContext(connection) as many:
        page = logged_in.get("/hook/").content.decode()
    assert page.count("data-waiting=") == 6
    assert len(many) == len(few)


def test_the_waiting_beads_are_read_off_their_own_index_not_every_open_bead(repo):
    waiting_bead(repo, "one")
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # its statistics pick a scan of a tiny table
            cursor.execute("SET LOCAL enable_seqscan = off")
        plan = hook.waiting(repositories=[repo.pk]).only("id", "not_before")[:50].explain()
    assert "bead_waiting" in plan, plan


# Races.


def send_back(bead_id):
    return Bead.objects.get(pk=bead_id).send_back("check gate: FAIL: test_total")


@pytest.mark.django_db(transaction=True)
def test_sessions_sending_one_bead_back_at_once_count_one_repeat(repo):
    bead = sent_back(
        Bead.objects.create(repository=repo, title="x"), "check gate: FAIL: test_total"
    )
    assert bead.start("a1")
    assert race(send_back, [(bead.pk,)] * 6).count(True) == 1
    bead.refresh_from_db()
    assert (bead.attempts, bead.repeats) == (2, 1) and bead.waits()

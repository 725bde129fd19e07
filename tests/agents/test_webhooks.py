"""Outgoing webhooks: a real HTTP receiver on 127.0.0.1 checks each body's
HMAC-SHA256 signature, answers 500 once, and gets the delivery again after
the backoff; failures stay visible; events are chosen per webhook."""

import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from rq import SimpleWorker

from agents import queues
from agents.jobs import reconcile, webhooks
from agents.models import Delivery, Session, Submission, Webhook
from agents.moves import changesets, lifecycle
from beads.models import Bead, Plan, Wave, WaveBead
from tests.agents.test_changesets import hand_in, pair, work
from tests.corral.test_admin import act
from tests.factories import land, run_lead
from tests.races import race

pytestmark = pytest.mark.django_db(transaction=True)
SECRET = "receiver-shared-secret"


class Receiver:
    """An HTTP server on 127.0.0.1 that answers each POST with the next status
    in `answers` (then 200), and keeps what it got."""

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.got = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.got.append((dict(self.headers), body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(answers=()):
        made.append(Receiver(answers))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def allow_private(settings):
    """The receivers here listen on 127.0.0.1 (tests/agents/test_webhook_egress.py
    proves such a destination is refused without the setting)."""
    settings.WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def quick_backoff(settings):
    settings.WEBHOOK_BACKOFF_SECONDS = [0.3, 0.3]


def run_default_queue():
    SimpleWorker([queues.queue(queues.DEFAULT)], connection=queues.connection()).work(burst=True)


def signed_right(headers, body, secret=SECRET):
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["X-Corral-Signature"], expected)


def awaiting_review(repo, agent):
    repo.review_mode = "human"
    repo.save()
    bead, sub = land(repo, agent, {"a.txt": "1\n"}, title="Needs eyes")
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"
    return bead, sub


def test_a_review_waiting_is_posted_signed_and_retried_after_a_500(
    repo, agent, rq_redis, receiver, settings
):
    # A wait no loaded machine outlasts; the test then moves the due time, not the clock.
    settings.WEBHOOK_BACKOFF_SECONDS = [600, 600]
    server = receiver(answers=[500])
    Webhook.objects.create(name="ci", url=server.url, secret=SECRET, events=["review_waiting"])
    bead, sub = awaiting_review(repo, agent)

    run_default_queue()  # the first try: the receiver answers 500
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert "HTTP 500" in delivery.last_error
    assert delivery.next_attempt_at > timezone.now() + timedelta(seconds=590)
    assert reconcile.reconcile()["webhooks"] == 0  # not due yet: the backoff
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert reconcile.reconcile()["webhooks"] == 1
    run_default_queue()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    assert len(server.got) == 2
    for headers, body in server.got:
        assert signed_right(headers, body)
        assert headers["X-Corral-Event"] == "review_waiting"
        assert headers["Content-Type"] == "application/json"
    payload = json.loads(server.got[-1][1])
    assert payload["event"] == "review_waiting" and payload["delivery"] == delivery.pk
    assert payload["data"]["bead"] == bead.pk and payload["data"]["submission"] == sub.pk
    assert not signed_right(server.got[-1][0], server.got[-1][1], secret="another secret")

    run_default_queue()  # nothing more is owed: a delivered one is never sent again
    assert webhooks.deliver(delivery.pk) == "skipped"
    assert len(server.got) == 2


@pytest.mark.slow
def test_a_delivery_that_keeps_failing_fails_visibly(
    repo, agent, rq_redis, receiver, quick_backoff, admin_client
):
    server = receiver(answers=[500, 503, 502, 500])
    hook = Webhook.objects.create(name="down", url=server.url, events=["review_waiting"])
    awaiting_review(repo, agent)
    for _ in range(3):
        run_default_queue()
        time.sleep(0.35)
        reconcile.reconcile()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 3, 502)
    assert len(server.got) == 3  # the first try and the two retries
    page = admin_client.get("/admin/agents/webhook/").content.decode()
    assert 'class="field-failed_deliveries">1<' in page
    page = admin_client.get("/admin/agents/delivery/?status__exact=failed").content.decode()
    assert "HTTP 502" in page
    assert hook.deliveries.count() == 1


def test_an_unreachable_receiver_is_a_failure_with_its_reason(repo, agent, rq_redis, settings):
    settings.WEBHOOK_BACKOFF_SECONDS = []
    Webhook.objects.create(name="gone", url="http://127.0.0.1:9/nothing", events=["review_waiting"])
    awaiting_review(repo, agent)
    run_default_queue()
    delivery = Delivery.objects.get()
    assert delivery.status == "failed" and "Connection refused" in delivery.last_error


def test_each_webhook_gets_only_the_events_it_chose_and_slack_gets_text(
    repo, agent, rq_redis, receiver
):
    plain, slack = receiver(), receiver()
    Webhook.objects.create(name="plans", url=plain.url, events=["plan_done"])
    Webhook.objects.create(name="slack", url=slack.url, events=["bead_blocked"], slack=True)

    plan = Plan.objects.create(workspace=repo.workspace, name="Q3", status="active")
    bead, sub = land(repo, agent, {"b.txt": "2\n"}, title="Only one")
    WaveBead.objects.create(wave=Wave.objects.create(plan=plan, number=1), bead=bead)
    run_lead(repo)  # lands it: the plan is done
    blocked = Bead.objects.create(repository=repo, title="Hard one", attempts=2)
    for _ in range(2):  # the third failed attempt blocks it
        lifecycle.claim(agent, bead=blocked)
        session = Session.objects.filter(bead=blocked).latest("created_at")
        lifecycle.end(session, "failed", "It broke.")
        blocked.refresh_from_db()
        if blocked.status == "blocked":
            break
    run_default_queue()

    assert [json.loads(b)["event"] for _, b in plain.got] == ["plan_done"]
    assert json.loads(plain.got[0][1])["data"]["beads"] == [bead.pk]
    ((headers, body),) = slack.got
    why = "Blocked after 3 failed attempts. Last: It broke."
    assert json.loads(body) == {"text": f"{blocked.pk} (Hard one) is blocked: {why}"}
    assert headers["X-Corral-Event"] == "bead_blocked"


def test_a_bead_a_person_blocks_is_told_once_whoever_blocks_it(repo, admin_client):
    hook = Webhook.objects.create(name="ops", url="http://127.0.0.1:9/", events=["bead_blocked"])
    in_admin, in_list, already = (
        Bead.objects.create(repository=repo, title=title) for title in ("A", "B", "C")
    )
    already.block("before")
    act(admin_client, Bead, "block", [in_admin, already])
    admin_client.post("/beads/bulk", {"action": "block", "bead": [in_list.id, already.id]})

    told = hook.deliveries.filter(event="bead_blocked").order_by("pk")
    assert [d.data["bead"] for d in told] == [already.pk, in_admin.pk, in_list.pk]


def test_a_stuck_repository_and_a_spent_budget_are_told_once(repo, agent, rq_redis, settings):
    settings.STUCK_SECONDS = 60
    hook = Webhook.objects.create(
        name="ops", url="http://127.0.0.1:9/", events=["repository_stuck", "budget_reached"]
    )
    _, sub = land(repo, agent, {"c.txt": "3\n"}, title="Waits")
    Submission.objects.filter(pk=sub.pk).update(queued_at=timezone.now() - timedelta(hours=1))
    with_drain = reconcile.reconcile()
    assert with_drain["stuck"] == 1
    assert reconcile.reconcile()["stuck"] == 0  # told once for this submission
    stuck = hook.deliveries.get(event="repository_stuck")
    assert stuck.data["repository"] == repo.slug and stuck.data["waiting"] == 1

    bead = Bead.objects.create(repository=repo, title="Costly")
    session = lifecycle.claim(agent, bead=bead)
    assert lifecycle.stop_over_budget(session, "Stopped at its bead's budget.", of_bead=True)
    spent = hook.deliveries.get(event="budget_reached")
    assert spent.data["bead"] == bead.pk and spent.data["agent"] == agent.name
    assert not hook.deliveries.filter(event="bead_blocked").exists()  # not chosen


def deliver_now(delivery_id):
    return webhooks.deliver(delivery_id)


def test_two_senders_racing_send_a_delivery_once(repo, agent, rq_redis, receiver):
    server = receiver()
    hook = Webhook.objects.create(name="once", url=server.url, events=["review_waiting"])
    delivery = Delivery.objects.create(webhook=hook, event="review_waiting", data={"n": 1})
    results = race(deliver_now, [(delivery.pk,)] * 4)
    assert sorted(results) == ["delivered", "skipped", "skipped", "skipped"]
    assert len(server.got) == 1
    assert Delivery.objects.get(pk=delivery.pk).attempts == 1


@pytest.mark.slow
def test_a_change_set_that_lands_is_told_once_with_each_members_commit(
    make_repo, agent, rq_redis, receiver
):
    api, web = make_repo("api"), make_repo("web")
    plain = receiver()
    Webhook.objects.create(name="sets", url=plain.url, secret=SECRET, events=["changeset_done"])
    changeset, a, w = pair(api, web)
    hand_in(a, agent, {"version": "2\n"})
    work(api, web)
    run_default_queue()
    assert plain.got == []  # one member held: nothing landed yet
    hand_in(w, agent, {"expects": "2\n"})
    work(api, web)
    run_default_queue()

    ((headers, body),) = plain.got
    assert headers["X-Corral-Event"] == "changeset_done" and signed_right(headers, body)
    data = json.loads(body)["data"]
    a.refresh_from_db()
    w.refresh_from_db()
    assert (data["changeset"], data["title"]) == (changeset.pk, "API v2")
    assert sorted((m["bead"], m["repository"], m["commit"]) for m in data["members"]) == sorted(
        [(a.pk, "api", a.commit_sha), (w.pk, "web", w.commit_sha)]
    )
    assert not changesets.landed(changeset, {})  # landed already: no second landing
    changesets.tell_done(changeset, [], {})  # and a second telling is keyed out
    run_default_queue()
    assert Delivery.objects.filter(event="changeset_done").count() == 1 and len(plain.got) == 1

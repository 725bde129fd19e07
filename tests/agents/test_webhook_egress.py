"""Webhooks reach only the outside world: a redirect is never followed (it is a
failed delivery, with the reason), and loopback, link-local and private
destinations are refused, when the webhook is saved and again at each send
(DNS can change), unless CORRAL_WEBHOOK_ALLOW_PRIVATE is on."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from agents.jobs import webhooks
from agents.models import Delivery, Webhook
from tests.agents.test_webhooks import Receiver

pytestmark = pytest.mark.django_db


class Redirector:
    """An HTTP server on 127.0.0.1 that answers every request with a 302 to `location`."""

    def __init__(self, location):
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Internal(Receiver):
    """The internal service: it records any request, GET included (urllib turns
    a redirected POST into a GET that still carries the signature)."""

    def __init__(self):
        super().__init__()
        handler = self.server.RequestHandlerClass
        handler.do_GET = lambda request: self.got_get(request)

    def got_get(self, request):
        self.got.append((dict(request.headers), b""))
        request.send_response(200)
        request.end_headers()


@pytest.fixture
def servers():
    made = []
    yield made
    for server in made:
        server.close()


@pytest.fixture(autouse=True)
def no_retries(settings):
    settings.WEBHOOK_BACKOFF_SECONDS = []


def send(url):
    hook = Webhook.objects.create(name="hook", url=url, events=["review_waiting"])
    delivery = Delivery.objects.create(webhook=hook, event="review_waiting", data={"bead": "x"})
    status = webhooks.deliver(delivery.pk)
    delivery.refresh_from_db()
    return status, delivery


def test_a_302_to_an_internal_service_is_a_failed_delivery_not_followed(servers, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # both servers are on 127.0.0.1
    internal = Internal()
    redirector = Redirector(internal.url)
    servers += [internal, redirector]

    status, delivery = send(redirector.url)

    assert status == "failed" and delivery.status == "failed"
    assert delivery.last_status_code == 302
    assert "redirect" in delivery.last_error and "not followed" in delivery.last_error
    assert internal.got == []  # nothing reached it, signed or not


def test_a_webhook_to_loopback_is_refused_at_send_time(servers, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    receiver = Receiver()
    servers.append(receiver)

    status, delivery = send(receiver.url)  # saved before the rule, or DNS changed since

    assert status == "failed" and delivery.status == "failed"
    assert "127.0.0.1" in delivery.last_error and "loopback" in delivery.last_error
    assert "CORRAL_WEBHOOK_ALLOW_PRIVATE" in delivery.last_error
    assert receiver.got == []


def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(servers, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    receiver = Receiver()
    servers.append(receiver)

    _, delivery = send(receiver.url.replace("127.0.0.1", "localhost"))

    assert delivery.status == "failed" and "loopback" in delivery.last_error
    assert receiver.got == []


@pytest.mark.parametrize(
    "url, kind",
    [
        ("http://127.0.0.1:8000/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://0.0.0.0/hook", "unspecified"),
    ],
)
def test_a_private_destination_is_refused_when_the_webhook_is_saved(settings, url, kind):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    hook = Webhook(name="hook", url=url, events=["review_waiting"])
    with pytest.raises(ValidationError) as caught:
        hook.full_clean()
    message = " ".join(caught.value.message_dict["url"])
    assert kind in message and "CORRAL_WEBHOOK_ALLOW_PRIVATE" in message, message


def test_the_admin_form_says_why_it_refuses(admin_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = admin_client.post(
        "/admin/agents/webhook/add/",
        {
            "name": "metadata",
            "url": "http://169.254.169.254/latest/",
            "secret": "s" * 20,
            "events": '["review_waiting"]',
            "active": "on",
            "deliveries-TOTAL_FORMS": "0",
            "deliveries-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, not a redirect
    assert "link-local" in response.content.decode()
    assert not Webhook.objects.exists()


def test_with_the_setting_on_a_private_destination_is_saved_and_delivered(servers, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver()
    servers.append(receiver)
    Webhook(name="local", url=receiver.url, events=["review_waiting"]).full_clean()

    status, delivery = send(receiver.url)

    assert status == "delivered" and delivery.last_status_code == 200
    assert len(receiver.got) == 1

"""The upstream's push webhook: each forge's signature checked (good, bad,
missing), a refusal always a 4xx with the reason, a good delivery asks the
lead to follow the upstream."""

import hashlib
import hmac
import json

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from agents import queues
from workspace.models import Repository

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "s3cret-for-the-hook"
BODY = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()


@pytest.fixture
def hooked(make_repo):
    repo = make_repo("team", push=True)
    Repository.objects.filter(pk=repo.pk).update(webhook_secret=SECRET)
    return Repository.objects.get(pk=repo.pk)


def hex_hmac(secret, body):
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(client, repo, headers, body=BODY):
    return client.post(
        f"/hooks/upstream/{repo.slug}/",
        data=body,
        content_type="application/json",
        headers=headers,
    )


def follow_asked(repo):
    return queues.runs_pending(f"follow-{repo.slug}")


GOOD = {
    "github": lambda body: {"X-Hub-Signature-256": "sha256=" + hex_hmac(SECRET, body)},
    "gitea": lambda body: {"X-Gitea-Signature": hex_hmac(SECRET, body)},
    "forgejo": lambda body: {"X-Forgejo-Signature": hex_hmac(SECRET, body)},
    "gitlab": lambda body: {"X-Gitlab-Token": SECRET},
}
BAD = {
    "github": {"X-Hub-Signature-256": "sha256=" + hex_hmac("wrong", BODY)},
    "gitea": {"X-Gitea-Signature": hex_hmac("wrong", BODY)},
    "gitlab": {"X-Gitlab-Token": "wrong"},
}


@pytest.mark.parametrize("forge", list(GOOD))
def test_a_delivery_signed_with_the_secret_asks_the_lead_to_follow(forge, hooked, client, rq_redis):
    response = deliver(client, hooked, GOOD[forge](BODY))
    assert response.status_code == 202, response.content
    assert follow_asked(hooked)


@pytest.mark.parametrize("forge", list(BAD))
def test_a_wrong_signature_is_refused_with_the_reason(forge, hooked, client, rq_redis):
    response = deliver(client, hooked, BAD[forge])
    assert response.status_code == 403
    assert "wrong" in response.json()["detail"]
    assert not follow_asked(hooked)


def test_a_body_changed_after_signing_is_refused(hooked, client, rq_redis):
    headers = GOOD["github"](BODY)
    response = deliver(client, hooked, headers, body=BODY.replace(b"main", b"mine"))
    assert response.status_code == 403 and not follow_asked(hooked)


def test_a_delivery_without_a_signature_is_refused(hooked, client, rq_redis):
    response = deliver(client, hooked, {})
    assert response.status_code == 403
    assert "no signature" in response.json()["detail"]


def test_a_repository_without_a_secret_refuses_every_delivery(make_repo, client, rq_redis):
    repo = make_repo("plain", push=True)
    response = deliver(client, repo, {"X-Gitlab-Token": ""})
    assert response.status_code == 403
    assert "no webhook secret" in response.json()["detail"]


def test_an_unknown_repository_is_404_and_a_get_405(client, hooked):
    assert deliver(client, type("R", (), {"slug": "nope"}), GOOD["gitlab"](BODY)).status_code == 404
    assert client.get(f"/hooks/upstream/{hooked.slug}/").status_code == 405


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
def test_a_signed_body_that_is_not_a_json_object_is_400(body, hooked, client, rq_redis):
    response = deliver(client, hooked, GOOD["github"](body), body=body)
    assert response.status_code == 400
    assert not follow_asked(hooked)


def test_a_push_to_another_branch_is_acknowledged_and_ignored(hooked, client, rq_redis):
    body = json.dumps({"ref": "refs/heads/feature"}).encode()
    response = deliver(client, hooked, GOOD["gitea"](body), body=body)
    assert response.status_code == 202 and "ignored" in response.json()["detail"]
    assert not follow_asked(hooked)


def test_the_secret_is_stored_encrypted(hooked):
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM workspace_repository WHERE id = %s", [hooked.pk])
        stored = cursor.fetchone()[0]
    assert SECRET not in stored and stored


def test_an_admin_makes_a_new_secret_shown_once(hooked, client, rq_redis):
    admin = get_user_model().objects.create_superuser("root", password="x")
    client.force_login(admin)
    page = client.post(f"/repos/{hooked.slug}/upstream/secret/").content.decode()
    hooked.refresh_from_db()
    assert hooked.webhook_secret != SECRET and hooked.webhook_secret in page
    assert hooked.webhook_secret not in client.get(f"/repos/{hooked.slug}/").content.decode()
    response = deliver(client, hooked, {"X-Gitlab-Token": hooked.webhook_secret})
    assert response.status_code == 202


def test_an_operator_may_not_make_a_webhook_secret(hooked, logged_in):
    assert logged_in.post(f"/repos/{hooked.slug}/upstream/secret/").status_code == 403


@pytest.mark.parametrize(
    "header",
    [
        {"X-GitHub-Event": "pull_request"},
        {"X-Gitea-Event": "pull_request"},
        {"X-Gitlab-Event": "Merge Request Hook"},
    ],
)
def test_a_pull_request_event_asks_the_forge_poll_and_not_a_fetch(header, hooked, client, rq_redis):
    Repository.objects.filter(pk=hooked.pk).update(
        land_via="pr", forge="github", forge_repo="team/app"
    )
    body = json.dumps({"action": "closed"}).encode()
    response = deliver(client, hooked, {**GOOD["github"](body), **header}, body=body)
    assert response.status_code == 202, response.content
    assert queues.lead_queue(hooked).fetch_job(f"forge-{hooked.slug}") is not None
    assert not follow_asked(hooked)


def test_a_pull_request_event_for_a_repository_landing_directly_is_acknowledged(
    hooked, client, rq_redis
):
    body = json.dumps({"action": "closed"}).encode()
    headers = {**GOOD["github"](body), "X-GitHub-Event": "pull_request"}
    response = deliver(client, hooked, headers, body=body)
    assert response.status_code == 202 and "not used" in response.json()["detail"]
    assert queues.lead_queue(hooked).fetch_job(f"forge-{hooked.slug}") is None

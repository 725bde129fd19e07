"""Only admins get the admin site, and there secrets are write-only.

Viewers and operators work in the dashboard: they are not staff, and the
admin site refuses them even when an account was made staff by hand (a data
migration took staff status from those made before). An agent's env values
and a webhook's secret, once saved, show only masked: not in the change
form, the list, the history, the admin's log nor the audit trail.
"""

import importlib
import json
import re
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test import Client

from agents.models import Agent
from agents.models.webhooks import Webhook
from tests.corral.test_admin import form_data, texts, url
from workspace import roles, secrets
from workspace.audit import AuditEntry

PASSWORD = "correct horse battery"
KEY = "sk-ant-api03-" + "Q" * 40
ENV = {"ANTHROPIC_API_KEY": KEY, "HTTP_PROXY_TOKEN": "proxy-pass-1234"}
NEW_KEY = "sk-openai-" + "Z" * 40
HOOK_SECRET = "whsec-receiver-shared-7f3a9c"


def person(name, role=None, **fields):
    user = get_user_model().objects.create_user(name, password=PASSWORD, **fields)
    if role:
        roles.assign(user, role)
    return user


def client_for(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def stored(db):
    agent = Agent.objects.create(name="claude", preset="claude-code", env=ENV)
    hook = Webhook.objects.create(name="ci", url="https://ci.example/hook", secret=HOOK_SECRET)
    return agent, hook


def secret_pages(agent, hook):
    return [
        "/admin/",
        url(Agent, "changelist"),
        url(Agent, "change", agent.pk),
        url(Webhook, "changelist"),
        url(Webhook, "change", hook.pk),
    ]


def leaks(html):
    return [s for s in (KEY, "proxy-pass-1234", NEW_KEY, HOOK_SECRET) if s in html]


@pytest.mark.parametrize("role", [roles.VIEWER, roles.OPERATOR])
def test_viewers_and_operators_are_not_staff_and_the_admin_refuses_them(role, stored):
    someone = person(f"{role}-1", role)
    assert not someone.is_staff
    # Made staff by hand, or before this rule: still no admin site.
    get_user_model().objects.filter(pk=someone.pk).update(is_staff=True)
    client = client_for(someone)
    for page in secret_pages(*stored):
        response = client.get(page)
        assert response.status_code == 403, page
        html = response.content.decode()
        assert "for admins" in html and not leaks(html), page
    assert client.get("/").status_code == 200  # the dashboard is theirs


def test_admins_and_superusers_open_the_admin_and_a_role_change_moves_staff(stored):
    admin = person("ada", roles.ADMIN)
    assert admin.is_staff
    assert client_for(admin).get("/admin/").status_code == 200
    root = get_user_model().objects.create_superuser("root", password=PASSWORD)
    assert client_for(root).get("/admin/").status_code == 200
    roles.assign(admin, roles.VIEWER)
    admin.refresh_from_db()
    assert not admin.is_staff
    assert client_for(admin).get("/admin/").status_code == 403
    roles.assign(root, roles.VIEWER)  # a superuser counts as an admin whatever its group
    assert client_for(root).get("/admin/").status_code == 200


def test_the_migration_takes_staff_from_viewers_and_operators_only(db):
    person("v", roles.VIEWER), person("o", roles.OPERATOR), person("a", roles.ADMIN), person("u")
    root = get_user_model().objects.create_superuser("root", password=PASSWORD)
    root.groups.set([Group.objects.get(name=roles.VIEWER)])
    get_user_model().objects.update(is_staff=True)  # as the old roles.assign left them
    migration = importlib.import_module("workspace.migrations.0008_staff_for_admins_only")
    migration.staff_for_admins_only(apps, SimpleNamespace(connection=connection))
    staff = dict(get_user_model().objects.values_list("username", "is_staff"))
    assert staff == {"v": False, "o": False, "a": True, "u": True, "root": True}


def test_agent_env_shows_masked_and_is_kept_changed_or_removed_key_by_key(admin_client, stored):
    agent, _ = stored
    change = url(Agent, "change", agent.pk)
    page = admin_client.get(change)
    html = page.content.decode()
    assert not leaks(html)
    assert "ANTHROPIC_API_KEY" in html and secrets.mask(KEY) in html
    # Saved as shown: the env stays as it was.
    assert admin_client.post(change, form_data(page)).status_code == 302
    assert Agent.objects.get(pk=agent.pk).env == ENV
    # A key given is set or replaced, a key given null removed, the rest kept.
    edit = {"OPENAI_API_KEY": NEW_KEY, "HTTP_PROXY_TOKEN": None}
    data = form_data(admin_client.get(change)) | {"env": json.dumps(edit)}
    assert admin_client.post(change, data).status_code == 302
    assert Agent.objects.get(pk=agent.pk).env == {
        "ANTHROPIC_API_KEY": KEY,
        "OPENAI_API_KEY": NEW_KEY,
    }
    bad = form_data(admin_client.get(change)) | {"env": '{"A": 1}'}
    refused = admin_client.post(change, bad)
    assert refused.status_code == 200 and "strings" in refused.content.decode()
    for page in [change, url(Agent, "history", agent.pk), url(Agent, "changelist")]:
        assert not leaks(admin_client.get(page).content.decode()), page
    assert not leaks(" ".join(e.get_change_message() for e in LogEntry.objects.all()))
    assert not leaks(" ".join(AuditEntry.objects.values_list("detail", flat=True)))


def test_a_webhook_secret_is_shown_once_when_made_then_only_masked(admin_client, db):
    add = form_data(admin_client.get(url(Webhook, "add")))
    assert not add.get("secret")  # the form holds no secret, not even a made-up one
    add |= {"name": "ci", "url": "https://ci.example/hook", "events": '["review_waiting"]'}
    response = admin_client.post(url(Webhook, "add"), add, follow=True)
    hook = Webhook.objects.get(name="ci")
    (shown,) = [m for m in texts(response) if "Copy it now" in m]
    assert hook.secret in shown and len(hook.secret) >= 32
    change = url(Webhook, "change", hook.pk)
    page = admin_client.get(change)
    assert hook.secret not in page.content.decode()
    assert secrets.mask(hook.secret) in page.content.decode()
    assert admin_client.post(change, form_data(page)).status_code == 302
    assert Webhook.objects.get(pk=hook.pk).secret == hook.secret  # left empty: kept
    data = form_data(admin_client.get(change)) | {"secret": HOOK_SECRET}
    assert admin_client.post(change, data).status_code == 302
    assert Webhook.objects.get(pk=hook.pk).secret == HOOK_SECRET
    for page in [change, url(Webhook, "history", hook.pk), url(Webhook, "changelist")]:
        html = admin_client.get(page).content.decode()
        assert not leaks(html) and hook.secret not in html, page
    assert not leaks(" ".join(AuditEntry.objects.values_list("detail", flat=True)))


def test_an_admin_who_may_only_view_agents_sees_the_env_masked(stored):
    """An admin group whose change permission an admin took away: every field
    shows read-only, and a secret read-only is its mask."""
    admin_group = Group.objects.get(name=roles.ADMIN)
    admin_group.permissions.remove(Permission.objects.get(codename="change_agent"))
    admin_group.permissions.remove(Permission.objects.get(codename="change_webhook"))
    client = client_for(person("ada", roles.ADMIN))
    agent, hook = stored
    for page in [url(Agent, "change", agent.pk), url(Webhook, "change", hook.pk)]:
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.content.decode()
        assert not leaks(html), page
        assert re.search(r"••••", html), page

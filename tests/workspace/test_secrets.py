"""Secrets at rest: an agent's env and a webhook's secret are stored encrypted
(Fernet, keyed from SECRET_KEY), read back only by the code that uses them,
exported only encrypted, and survive a SECRET_KEY rotation
(CORRAL_SECRET_KEYS_OLD, then `manage.py reencrypt_secrets`)."""

import hashlib
import hmac
import importlib
import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection

from agents.jobs.runner import run_session
from agents.models import Agent, LogChunk
from agents.models.webhooks import Webhook
from agents.moves import lifecycle
from beads.models import Bead
from workspace import config, secrets

KEY = "sk-ant-api03-" + "Q" * 40
ENV = {"ANTHROPIC_API_KEY": KEY, "HTTP_PROXY_TOKEN": "proxy-pass-1234"}
HOOK_SECRET = "whsec-receiver-shared-7f3a9c"
NEW_KEY = "n3w-secret-key-" + "x" * 40

ROOT = Path(__file__).resolve().parents[2]


def raw(table, column, pk):
    """The column as the database holds it, past any field's conversion."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return str(cursor.fetchone()[0])


def write_raw(table, column, pk, value):
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [value, pk])  # noqa: S608


@pytest.fixture
def stored(db):
    agent = Agent.objects.create(name="claude", preset="claude-code", env=ENV)
    hook = Webhook.objects.create(name="ci", url="https://ci.example/hook", secret=HOOK_SECRET)
    return agent, hook


def test_agent_env_and_webhook_secrets_are_encrypted_at_rest(stored):
    agent, hook = stored
    at_rest = raw("agents_agent", "env", agent.pk)
    assert KEY not in at_rest and "ANTHROPIC_API_KEY" not in at_rest
    assert json.loads(secrets.unseal(at_rest)) == ENV
    at_rest = raw("agents_webhook", "secret", hook.pk)
    assert HOOK_SECRET not in at_rest and secrets.unseal(at_rest) == HOOK_SECRET
    # Each save seals afresh: the same value never gives the same text twice.
    agent.save()
    assert raw("agents_agent", "env", agent.pk) != secrets.seal(json.dumps(ENV))
    assert Agent.objects.get(pk=agent.pk).env == ENV
    assert Webhook.objects.get(pk=hook.pk).secret == HOOK_SECRET


def test_a_row_loaded_without_touching_its_secret_is_saved_unchanged(stored):
    agent, _ = stored
    before = raw("agents_agent", "env", agent.pk)
    again = Agent.objects.get(pk=agent.pk)
    again.active = False
    again.save()
    assert raw("agents_agent", "env", agent.pk) == before  # not read, so not sealed again
    assert Agent.objects.get(pk=agent.pk).env == ENV


def test_the_code_that_uses_them_still_gets_the_plain_values(stored):
    _, hook = stored
    body = b'{"event": "review_waiting"}'
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert Webhook.objects.get(pk=hook.pk).sign(body) == expected


@pytest.mark.django_db(transaction=True)
def test_an_agent_process_gets_its_env_from_the_encrypted_field(repo, settings):
    settings.WATCH_INTERVAL_SECONDS = 0.2
    code = "import os; print('key ends', os.environ['ANTHROPIC_API_KEY'][-6:])"
    agent = Agent.objects.create(name="printer", command=[sys.executable, "-c", code], env=ENV)
    bead = Bead.objects.create(repository=repo, title="Print", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)
    log = "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))
    assert f"key ends {KEY[-6:]}" in log


def test_an_export_holds_only_the_encrypted_values_and_loads_back(stored, tmp_path):
    out = io.StringIO()
    call_command("dumpdata", "agents.agent", "agents.webhook", stdout=out)
    dump = out.getvalue()
    assert KEY not in dump and HOOK_SECRET not in dump and "proxy-pass" not in dump
    path = tmp_path / "secrets.json"
    path.write_text(dump)
    Agent.objects.all().delete()
    Webhook.objects.all().delete()
    call_command("loaddata", str(path), verbosity=0)
    assert Agent.objects.get(name="claude").env == ENV
    assert Webhook.objects.get(name="ci").secret == HOOK_SECRET


def test_a_rotated_secret_key_reads_through_the_old_one_until_re_encrypted(stored, settings):
    agent, hook = stored
    old = settings.SECRET_KEY
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [old]
    assert Agent.objects.get(pk=agent.pk).env == ENV
    out = io.StringIO()
    call_command("reencrypt_secrets", stdout=out)
    assert "2" in out.getvalue()  # the env and the webhook secret
    settings.SECRET_KEY_FALLBACKS = []
    assert Agent.objects.get(pk=agent.pk).env == ENV
    assert Webhook.objects.get(pk=hook.pk).secret == HOOK_SECRET
    # Under a key that never sealed them, reading says what to do, and nothing else does.
    settings.SECRET_KEY = "another-key-" + "y" * 40
    again = Agent.objects.get(pk=agent.pk)  # loading the row does not open the secret
    assert again.name == "claude"
    with pytest.raises(secrets.SecretUnreadable, match="CORRAL_SECRET_KEYS_OLD"):
        again.env  # noqa: B018


def test_old_keys_come_from_the_environment_and_a_bad_one_names_the_variable(monkeypatch):
    monkeypatch.setenv("CORRAL_SECRET_KEYS_OLD", f"{'a' * 40}, {'b' * 40}")
    assert config.old_secret_keys() == ["a" * 40, "b" * 40]
    monkeypatch.setenv("CORRAL_SECRET_KEYS_OLD", "short")
    with pytest.raises(ImproperlyConfigured, match="CORRAL_SECRET_KEYS_OLD"):
        config.old_secret_keys()
    monkeypatch.delenv("CORRAL_SECRET_KEYS_OLD")
    assert config.old_secret_keys() == []


def test_the_migration_encrypts_the_values_stored_before_in_place(stored):
    agent, hook = stored
    write_raw("agents_agent", "env", agent.pk, json.dumps(ENV))
    write_raw("agents_webhook", "secret", hook.pk, HOOK_SECRET)
    # By name, not number: the lead renumbers migrations at merges.
    (path,) = (ROOT / "agents" / "migrations").glob("*_encrypt_secrets.py")
    migration = importlib.import_module(f"agents.migrations.{path.stem}")
    migration.encrypt_existing(apps, SimpleNamespace(connection=connection))
    assert KEY not in raw("agents_agent", "env", agent.pk)
    assert HOOK_SECRET not in raw("agents_webhook", "secret", hook.pk)
    assert Agent.objects.get(pk=agent.pk).env == ENV
    assert Webhook.objects.get(pk=hook.pk).secret == HOOK_SECRET
    sealed = raw("agents_agent", "env", agent.pk)
    migration.encrypt_existing(apps, SimpleNamespace(connection=connection))  # run twice: no-op
    assert raw("agents_agent", "env", agent.pk) == sealed


def test_masks_show_that_a_secret_is_set_never_what_it_is():
    assert secrets.mask(KEY) == "••••" + KEY[-4:]
    assert secrets.mask("short-one") == "•••• (set)"  # too short to show any of it
    assert secrets.mask("") == ""


@pytest.mark.django_db(transaction=True)
def test_a_worker_without_the_key_fails_the_session_saying_why(repo, settings):
    """A session worker elsewhere with a SECRET_KEY of its own: an agent with an
    env fails to start, with the reason; one without an env still runs."""
    settings.WATCH_INTERVAL_SECONDS = 0.2
    code = "print('started')"
    keyed = Agent.objects.create(name="keyed", command=[sys.executable, "-c", code], env=ENV)
    plain = Agent.objects.create(name="plain", command=[sys.executable, "-c", code])
    settings.SECRET_KEY = NEW_KEY
    for agent, title in [(keyed, "Keyed"), (plain, "Plain")]:
        bead = Bead.objects.create(repository=repo, title=title, scope=["src/**"])
        session = lifecycle.claim(agent, bead=bead)
        session.queue()
        run_session(session.pk)
        session.refresh_from_db()
        if agent == keyed:
            assert session.status == "failed" and "SECRET_KEY" in session.error
        else:
            log = "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))
            assert "started" in log

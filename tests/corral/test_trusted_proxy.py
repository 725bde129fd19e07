"""Behind a reverse proxy, lock-outs and the audit's address count the real
client: the right-most X-Forwarded-For address that is not a trusted proxy
(CORRAL_TRUSTED_PROXIES). Without the setting, or from an address that is not
a trusted proxy, X-Forwarded-For is ignored: a client cannot spoof its address."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from workspace import roles
from workspace.audit import Action, AuditEntry, client_ip

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
PROXY = "10.0.0.7"


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]


def via(forwarded=None, remote=PROXY):
    """A browser whose requests reach Corral from `remote`, forwarded for `forwarded`."""
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return Client(**extra)


def log_in(client, username, password):
    return client.post("/login/", {"username": username, "password": password})


def lock_out(client, username, limit):
    for _ in range(limit):
        log_in(client, username, "wrong")
    assert log_in(client, username, PASSWORD).status_code == 429


def address(**meta):
    return client_ip(RequestFactory().get("/", **meta))


def test_behind_a_trusted_proxy_one_client_locked_out_leaves_the_others_in(
    user, settings, behind_proxy
):
    lock_out(via("203.0.113.5"), "alice", settings.AXES_FAILURE_LIMIT)
    # Another person behind the same proxy logs in as alice: a different client.
    assert log_in(via("198.51.100.20"), "alice", PASSWORD).status_code == 302
    # The locked-out client stays locked out, through another proxy of the list too.
    assert log_in(via("203.0.113.5", remote="10.0.0.8"), "alice", PASSWORD).status_code == 429


def test_a_client_cannot_spoof_its_way_out_of_a_lock_out(user, settings, behind_proxy):
    """The right-most untrusted address counts: what the client put before it does not."""
    limit = settings.AXES_FAILURE_LIMIT
    for n in range(limit):
        log_in(via(f"192.0.2.{n}, 203.0.113.5"), "alice", "wrong")
    assert log_in(via("192.0.2.99, 203.0.113.5"), "alice", PASSWORD).status_code == 429
    # Not through the proxy, X-Forwarded-For is the client's own word, and ignored.
    direct = "203.0.113.77"
    for n in range(limit):
        log_in(via(f"192.0.2.{n}", remote=direct), "alice", "wrong")
    assert log_in(via("192.0.2.200", remote=direct), "alice", PASSWORD).status_code == 429


def test_without_the_setting_x_forwarded_for_is_ignored(user, settings):
    assert settings.TRUSTED_PROXIES == []
    limit = settings.AXES_FAILURE_LIMIT
    for n in range(limit):
        log_in(via(f"192.0.2.{n}"), "alice", "wrong")
    assert log_in(via("192.0.2.250"), "alice", PASSWORD).status_code == 429
    settings.HTTPS = True  # behind a TLS proxy, still no trust without the setting
    assert address(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="192.0.2.1") == PROXY


def test_the_client_address_is_the_right_most_untrusted_one(settings, behind_proxy):
    assert address(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.5") == "203.0.113.5"
    chain = "192.0.2.1, 203.0.113.5, 10.0.0.9"  # spoofed, the client, a second proxy
    assert address(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=chain) == "203.0.113.5"
    assert address(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="[2001:db8::1]:443") == "2001:db8::1"
    assert address(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="203.0.113.5:5100") == "203.0.113.5"
    # Nothing forwarded, or only proxies, or nonsense: the last proxy known.
    assert address(REMOTE_ADDR=PROXY) == PROXY
    assert address(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="10.0.0.9") == "10.0.0.9"
    assert address(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="unknown, 10.0.0.9") == "10.0.0.9"
    # A direct client's header is ignored.
    assert address(REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="192.0.2.1") == "203.0.113.9"


def test_the_audit_records_the_real_client_behind_the_proxy(repo, behind_proxy):
    alice = get_user_model().objects.create_user("olga", password=PASSWORD)
    roles.assign(alice, roles.OPERATOR)
    client = via("203.0.113.5, 10.0.0.9")
    client.force_login(alice)
    assert client.post(f"/repos/{repo.slug}/dispatch/pause").status_code == 302
    entry = AuditEntry.objects.get(action=Action.PAUSE)
    assert entry.ip == "203.0.113.5"


def check(tmp_path, value):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {"CORRAL_HOME": str(tmp_path), "CORRAL_TRUSTED_PROXIES": value}
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_bad_trusted_proxies_value_stops_start_up_naming_it(tmp_path):
    done = check(tmp_path, "10.0.0.1, proxy.example")
    assert done.returncode != 0
    assert "CORRAL_TRUSTED_PROXIES" in done.stderr and "proxy.example" in done.stderr
    assert "Traceback" not in done.stderr
    assert check(tmp_path, "10.0.0.0/8, ::1").returncode == 0

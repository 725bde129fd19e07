"""Secrets an agent prints never reach its log: session and agent tokens, the
common API key shapes and the agent's own env values are scrubbed as the log
streams in (the runner's reader and `POST sessions/{id}/log`), before any
LogChunk is written, also when a secret is cut in two between two pieces."""

import random
import re

import pytest

from agents.jobs.runner import run_session
from agents.models import Agent, LogChunk, Session
from agents.moves import lifecycle
from beads.models import Bead
from tests.agents.test_api import Api
from tests.factories import program_agent
from workspace import scrub

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "Zq9hidden4711Value"  # no credential shape: only being the agent's env value gives it away
TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-]{12,}")


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def pieces(secret, size=10):
    """Every run of `size` characters of `secret`: none may be shown."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def shows_any(text, *secrets):
    return [p for secret in secrets for p in pieces(secret) if p in text]


def stored_log(session):
    return "".join(LogChunk.objects.filter(session=session).values_list("text", flat=True))


def between(text, start, end="\n"):
    return re.search(re.escape(start) + "(.*?)" + re.escape(end), text).group(1)


def test_what_an_agent_prints_of_its_token_and_env_is_redacted_on_its_page_and_log_txt(
    repo, logged_in
):
    agent = program_agent("leaker", "VENDOR_API_KEY", "1.0", env={"VENDOR_API_KEY": SECRET})
    bead = Bead.objects.create(repository=repo, title="Leak", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    run_session(session.pk)

    log = stored_log(session)
    assert "LEAKED" in log  # the agent ran and its log was kept
    assert "whole token: [redacted]" in log and "whole secret: [redacted]" in log
    # Cut in two between reads: neither half shows, the head too short to be a token alone.
    for label in ("token", "secret"):
        assert not TOKEN_CHARS.search(between(log, f"split {label}: ", " :end")), log
    assert not re.search(r"crs_[A-Za-z0-9_\-]", log), log
    assert not shows_any(log, SECRET)
    page = logged_in.get(f"/sessions/{session.pk}/").content.decode()
    text = b"".join(logged_in.get(f"/sessions/{session.pk}/log.txt").streaming_content).decode()
    for shown in (page, text):
        assert "LEAKED" in shown and "crs_" not in shown and SECRET[:8] not in shown


def external_session(repo, env=None):
    """A live session of an external agent on a new bead, and an API client with its token."""
    agent = Agent.objects.create(name="outside", preset="shell", internal=False, env=env or {})
    bead = Bead.objects.create(repository=repo, title="Work", scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    token = session.issue_token()
    return session, token, Api(token)


def post_log(client, session, text):
    response = client.post(f"sessions/{session.pk}/log", {"text": text})
    assert response.status_code == 200, response.content
    return response.json()


def test_a_token_posted_to_the_log_is_stored_redacted(repo, logged_in):
    session, token, client = external_session(repo)
    post_log(client, session, f"my token is {token}\n")
    assert stored_log(session) == "my token is [redacted]\n"
    post_log(client, session, f"CORRAL_TOKEN={token}")  # whole: shown at once
    assert stored_log(session) == "my token is [redacted]\nCORRAL_TOKEN=[redacted]"
    assert token not in logged_in.get(f"/sessions/{session.pk}/").content.decode()


def test_a_token_cut_between_two_log_calls_is_never_stored(repo):
    session, token, client = external_session(repo)
    post_log(client, session, f"CORRAL_TOKEN is {token[:7]}")
    assert not shows_any(stored_log(session), token) and token[:7] not in stored_log(session)
    post_log(client, session, f"{token[7:]} and more\n")
    log = stored_log(session)
    assert log == "CORRAL_TOKEN is [redacted] and more\n", log


def test_the_agents_env_values_are_redacted_from_its_log_calls(repo):
    session, _, client = external_session(repo, env={"ANTHROPIC_API_KEY": SECRET, "MODE": "fast"})
    post_log(client, session, f"key={SECRET[:5]}")
    post_log(client, session, f"{SECRET[5:]}; mode fast\n")
    assert stored_log(session) == "key=[redacted]; mode fast\n"


def test_a_held_tail_is_shown_when_the_session_ends(repo):
    session, _, client = external_session(repo)
    post_log(client, session, "done, see crs_")  # could be a token's start: held
    assert "crs_" not in stored_log(session)
    assert client.post(f"sessions/{session.pk}/release", {"reason": "stop"}).status_code == 200
    assert stored_log(session) == "done, see crs_"
    assert Session.objects.get(pk=session.pk).log_held == ""


# The stream itself. An agent's output (lines=True, the runner's): wherever it
# is cut, what comes out is what scrubbing the whole gives. A log call
# (lines=False: each call a message, its end shown at once) cut inside a secret:
# the same.

TOKEN = "crs_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hI6kL9nO2x"  # as long as a real one
KEY = "sk-ant-api03-" + "x7Y2k9QpL4m" * 3
PRIVATE = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow" + "IBAAKCAQEA" * 8 + "\n-----END RSA PRIVATE KEY-----"
)
SECRETS = [TOKEN, KEY, SECRET, "hunter2hunter2", PRIVATE, "crl_" + TOKEN[4:], "crp_" + TOKEN[4:]]
TEXT = (
    f"start {TOKEN} then\nAuthorization: Bearer {KEY}\nexport DB_PASSWORD=hunter2hunter2\n"
    f"the env: {SECRET}.\n{PRIVATE}\ncrl_{TOKEN[4:]} end\nci runs as crp_{TOKEN[4:]}\n"
)


def streamed(parts, lines):
    stream = scrub.Stream([SECRET], lines=lines)
    return "".join(stream.feed(part) for part in parts) + stream.finish()


def test_output_cut_at_any_point_is_scrubbed_as_if_whole():
    whole = scrub.scrub(TEXT, [SECRET])
    assert not shows_any(whole, *SECRETS)
    for cut in range(len(TEXT) + 1):
        assert streamed([TEXT[:cut], TEXT[cut:]], lines=True) == whole, cut


def test_output_cut_in_many_pieces_is_scrubbed_as_if_whole():
    rng = random.Random(21)
    whole = scrub.scrub(TEXT, [SECRET])
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(TEXT)), rng.randint(2, 12)))
        parts = [TEXT[a:b] for a, b in zip([0, *cuts], [*cuts, len(TEXT)], strict=True)]
        assert streamed(parts, lines=True) == whole, cuts


def test_log_calls_cut_inside_a_secret_are_scrubbed_as_if_whole():
    whole = scrub.scrub(TEXT, [SECRET])
    for secret in SECRETS:
        start = TEXT.index(secret)
        for cut in range(start, start + len(secret) + 1):
            assert streamed([TEXT[:cut], TEXT[cut:]], lines=False) == whole, (secret, cut)


def test_a_log_calls_ordinary_text_is_shown_at_once():
    stream = scrub.Stream([SECRET])
    assert stream.feed("step 1 of 3: working") == "step 1 of 3: working"
    assert stream.feed("; progress 40%") == "; progress 40%"
    assert stream.feed(f" with {TOKEN}") == " with [redacted]"  # whole: nothing to wait for
    assert stream.held == ""

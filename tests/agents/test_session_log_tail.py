"""A session's page shows the tail of a long log, with the whole of it one link
away; what it reads does not grow with the log."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import LogChunk
from agents.moves import lifecycle
from agents.reports import logtail
from beads.models import Bead

pytestmark = pytest.mark.django_db

LINE = "x" * 99 + "\n"


def session_with_log(repo, agent, chunks, title="Talk a lot"):
    bead = Bead.objects.create(repository=repo, title=title, scope=["src/**"])
    session = lifecycle.claim(agent, bead=bead)
    LogChunk.objects.bulk_create(
        LogChunk(session=session, seq=n, text=f"chunk {n:05d}\n" + LINE * 10) for n in range(chunks)
    )
    return session


def test_a_two_megabyte_log_shows_its_tail_and_links_to_the_whole(logged_in, repo, agent):
    session = session_with_log(repo, agent, 2000)  # about 2 MB
    response = logged_in.get(f"/sessions/{session.pk}/")
    html = response.content.decode()
    assert len(html) < logtail.LOG_TAIL_CHARS + 100_000
    assert "chunk 01999" in html and "chunk 00000" not in html
    assert f'href="/sessions/{session.pk}/log.txt"' in html
    assert "of the log are not shown here" in html
    # The poller goes on from the last chunk shown.
    assert "?after=1999" in html
    whole = logged_in.get(f"/sessions/{session.pk}/log.txt")
    assert whole["Content-Type"] == "text/plain; charset=utf-8"
    text = b"".join(whole.streaming_content).decode()
    assert text == "".join(f"chunk {n:05d}\n" + LINE * 10 for n in range(2000))


def test_a_short_log_is_shown_whole_without_a_link(logged_in, repo, agent):
    session = session_with_log(repo, agent, 3)
    html = logged_in.get(f"/sessions/{session.pk}/").content.decode()
    assert "chunk 00000" in html and "chunk 00002" in html
    assert "log.txt" not in html


def test_the_session_page_reads_as_many_queries_for_a_long_log_as_for_a_short_one(
    logged_in, repo, agent
):
    short = session_with_log(repo, agent, 3, title="Short")
    long = session_with_log(repo, agent, 2000, title="Long")
    counts = []
    for session in (short, long):
        with CaptureQueriesContext(connection) as queries:
            assert logged_in.get(f"/sessions/{session.pk}/").status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1] and counts[0] > 0, counts


def test_the_whole_log_needs_a_login(client, repo, agent):
    session = session_with_log(repo, agent, 1)
    response = client.get(f"/sessions/{session.pk}/log.txt")
    assert response.status_code == 302 and "/login/" in response["Location"]

"""A session's page (live log, time bar, changed files, context pack, final diff,
Cancel), the repository page's running sessions and dispatch switch, and the
overview's Run button.

Sessions run real agent programs from tests/programs/; the dispatch test runs a
real `manage.py rqworker` in a subprocess.
"""

import re
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rq import Worker

from agents import queues
from agents.jobs.dispatch import dispatch
from agents.jobs.runner import run_session
from agents.models import LogChunk, Session
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import program_agent, run_in_thread, wait_for
from tests.procs import Running

session_db = pytest.mark.django_db(transaction=True)
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def page(client, url, **headers):
    response = client.get(url, **headers)
    assert response.status_code == 200, url
    return response.content.decode()


def shown_messages(response):
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


def text(html):
    return re.sub(r"<[^>]+>", "", html)


def claimed(repo, agent, title="Do the thing", scope=("src/**",), **fields):
    """A bead claimed by `agent`: its session, not run yet."""
    bead = Bead.objects.create(repository=repo, title=title, scope=list(scope), **fields)
    session = lifecycle.claim(agent, bead=bead)
    session.queue()
    return session


def run(repo, agent, **fields):
    session = claimed(repo, agent, **fields)
    run_session(session.pk)
    session.refresh_from_db()
    return session


def running(repo, agent, title="Do the thing"):
    """A session that a worker has started (set directly: no process behind it)."""
    session = claimed(repo, agent, title=title)
    assert session.start(worker="test:1")
    return session


def test_every_session_page_needs_a_login(client, db):
    pk = uuid.uuid4()
    for method, url in [
        ("get", f"/sessions/{pk}/"),
        ("get", f"/sessions/{pk}/log?after=3"),
        ("post", f"/sessions/{pk}/cancel"),
        ("post", "/repos/app/dispatch/pause"),
        ("post", "/repos/app/dispatch/resume"),
        ("post", "/dispatch"),
    ]:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/"), url


def test_the_buttons_refuse_get(logged_in, db):
    pk = uuid.uuid4()
    for url in [
        f"/sessions/{pk}/cancel",
        "/repos/app/dispatch/pause",
        "/repos/app/dispatch/resume",
        "/dispatch",
    ]:
        assert logged_in.get(url).status_code == 405, url


def test_unknown_sessions_and_repositories_are_404(logged_in, db):
    pk = uuid.uuid4()
    assert logged_in.get(f"/sessions/{pk}/").status_code == 404
    assert logged_in.get(f"/sessions/{pk}/log").status_code == 404
    assert logged_in.post(f"/sessions/{pk}/cancel").status_code == 404
    assert logged_in.post("/repos/nope/dispatch/pause").status_code == 404
    assert logged_in.get("/sessions/not-a-uuid/").status_code == 404


@session_db
def test_a_finished_session_shows_its_log_files_context_size_and_diff(logged_in, repo, rq_redis):
    session = run(repo, program_agent("chatty", "5", "0"), title="Talk <a bit>")
    assert session.status == "submitted", session.error
    url = f"/sessions/{session.pk}/"
    assert session.get_absolute_url() == url
    html = page(logged_in, url)

    log = re.search(r'<pre id="session-log" class="log[^"]*"[^>]*>(.*?)</pre>', html, re.S).group(1)
    assert [line.split()[:2] for line in log.splitlines()] == [["line", str(n)] for n in range(5)]
    assert "<code>src/chatty.txt</code>" in html
    budget = f"{session.context_chars:,} of 40,000 characters"
    assert session.context_chars > 0 and f'<dd id="context-size">{budget}</dd>' in html
    # The clone is removed at hand-in; the page shows the pack from the database.
    assert not Path(session.workdir).exists()
    context = re.search(r'<pre class="context">(.*?)</pre>', html, re.S).group(1)
    assert "Talk &lt;a bit&gt;" in context and "src/**" in context
    assert '<span class="add">+5 lines</span>' in html
    assert '<span class="patch-size" title="lines added and removed">+1 −0</span>' in html
    assert '<span class="meta">diff --git a/src/chatty.txt b/src/chatty.txt</span>' in html
    assert f'href="/submissions/{session.submission.pk}/"' in html
    assert 'data-status="submitted"' in html and "Talk &lt;a bit&gt;" in html
    assert f'href="{session.bead.get_absolute_url()}"' in html
    assert '<dd id="exit-code">0</dd>' in html and "ran 0:0" in html
    assert "The log is complete." in html
    assert "hx-trigger" not in html and "Cancel session" not in html  # finished: no polling


@session_db
def test_no_page_reads_the_session_workdir(logged_in, repo):
    """Session workers may run on another machine: with the clone gone, every
    page that shows a session still renders it whole."""
    session = run(repo, program_agent("crasher"), title="Crash elsewhere")
    assert session.status == "failed" and Path(session.workdir).exists()
    shutil.rmtree(session.workdir)
    html = page(logged_in, f"/sessions/{session.pk}/")
    assert "Crash elsewhere" in re.search(r'<pre class="context">(.*?)</pre>', html, re.S)[1]
    partial = page(logged_in, f"/sessions/{session.pk}/?part=context", HTTP_HX_REQUEST="true")
    assert "Crash elsewhere" in partial
    for url in ("/", f"/repos/{repo.slug}/", f"/repos/{repo.slug}/lead/", "/hook/"):
        assert logged_in.get(url).status_code == 200


@session_db
def test_a_failed_session_keeps_its_clone_and_shows_its_context_pack(logged_in, repo):
    session = run(repo, program_agent("crasher"), title="Crash politely")
    assert session.status == "failed"
    html = page(logged_in, f"/sessions/{session.pk}/")
    context = re.search(r'<pre class="context">(.*?)</pre>', html, re.S).group(1)
    assert "Crash politely" in context and "src/**" in context
    assert "exited with code 3" in html and '<dd id="exit-code">3</dd>' in html
    assert "about to fail" in html
    assert "No patch: the session ended without handing one in." in html


@session_db
def test_a_live_session_polls_its_status_and_log(logged_in, repo, agent):
    session = running(repo, agent)
    for part in ["first\n", "second\n", "third\n"]:
        session.append_log(part)
    url = f"/sessions/{session.pk}/"
    html = page(logged_in, url)
    status = re.search(r'<section id="session-status".*?>', html).group(0)
    assert (
        f'hx-get="{url}"' in status and 'hx-trigger="every 1s, session-ended from:body"' in status
    )
    assert "first\nsecond\nthird\n</pre>" in html
    poller = re.search(r'<div id="log-poller".*?>', html).group(0)
    assert f'hx-get="/sessions/{session.pk}/log?after=2"' in poller
    assert 'hx-trigger="every 1s"' in poller and 'hx-swap="outerHTML"' in poller
    assert f'action="/sessions/{session.pk}/cancel"' in html and "csrfmiddlewaretoken" in html
    assert re.search(r'<progress id="time-bar" max="1800" value="\d+"', html)
    assert re.search(r'<span id="time-left" data-left="\d+">(30:00|29:\d\d) left</span>', html)

    partial = page(logged_in, url, **HX)
    assert partial.lstrip().startswith('<section id="session-status"')
    assert "<html" not in partial and "session-log" not in partial and 'id="diff"' not in partial

    Session.objects.filter(pk=session.pk).update(changed_files=["src/a.py", "src/b.py"])
    partial = page(logged_in, url, **HX)
    assert "<code>src/a.py</code>" in partial and "<code>src/b.py</code>" in partial


@session_db
def test_the_log_endpoint_returns_only_later_chunks(logged_in, repo, agent):
    session = running(repo, agent)
    for part in ["alpha\n", "beta\n", "gamma <b>\n"]:
        session.append_log(part)
    url = f"/sessions/{session.pk}/log"
    response = logged_in.get(f"{url}?after=0", **HX)
    html = response.content.decode()
    assert "alpha" not in html
    oob = re.search(r'<span hx-swap-oob="beforeend:#session-log">(.*?)</span>', html, re.S)
    assert oob.group(1) == "beta\ngamma &lt;b&gt;\n"
    assert f'hx-get="{url}?after=2"' in html and 'hx-trigger="every 1s"' in html
    assert "HX-Trigger" not in response

    nothing_new = page(logged_in, f"{url}?after=2", **HX)
    assert "hx-swap-oob" not in nothing_new and f'hx-get="{url}?after=2"' in nothing_new
    assert logged_in.get(f"{url}?after=x").status_code == 400
    assert "alpha" in page(logged_in, url)  # no `after`: from the start


@session_db
def test_the_log_stays_open_while_an_ended_runner_drains_then_stops(logged_in, repo, agent):
    session = running(repo, agent)
    session.append_log("working\n")
    url = f"/sessions/{session.pk}/log?after=0"
    # Cancelled a moment ago: the runner is still stopping the agent (no exit code yet).
    Session.objects.filter(pk=session.pk).update(
        status="cancelled", pid=4242, ended_at=timezone.now() - timedelta(seconds=1)
    )
    draining = logged_in.get(url, **HX)
    assert 'hx-trigger="every 1s"' in draining.content.decode()
    Session.objects.filter(pk=session.pk).update(exit_code=-15)
    session.append_log("Terminated\n")
    done = logged_in.get(url, **HX)
    html = done.content.decode()
    assert "Terminated" in html and "hx-trigger" not in html and "hx-get" not in html
    assert "The log is complete." in html
    assert done["HX-Trigger"] == "session-ended"  # the status part refreshes once more
    # A runner that died: the log closes after the drain time anyway.
    Session.objects.filter(pk=session.pk).update(
        exit_code=None, ended_at=timezone.now() - timedelta(minutes=5)
    )
    assert "hx-trigger" not in page(logged_in, url, **HX)


@session_db
def test_a_finished_sessions_log_endpoint_has_no_trigger(logged_in, repo, rq_redis):
    session = run(repo, program_agent("chatty", "3", "0"))
    assert session.status == "submitted"
    last = LogChunk.objects.filter(session=session).order_by("seq").last().seq
    response = logged_in.get(f"/sessions/{session.pk}/log?after=-1", **HX)
    html = response.content.decode()
    assert "line 0" in html and "line 2" in html
    assert f'data-after="{last}"' in html and "hx-trigger" not in html
    assert response["HX-Trigger"] == "session-ended"


@session_db
def test_cancelling_a_live_session_returns_its_bead(logged_in, user, repo, agent):
    session = running(repo, agent)
    url = f"/sessions/{session.pk}/"
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"{url}cancel").status_code == 403

    response = logged_in.post(f"{url}cancel", follow=True)
    assert response.redirect_chain == [(url, 302)]
    bead_id = session.bead_id
    assert shown_messages(response) == [
        ("success", f"Cancelled: the agent is being stopped and {bead_id} is back on the hook.")
    ]
    session.refresh_from_db()
    session.bead.refresh_from_db()
    assert session.status == "cancelled" and session.error == "Cancelled by alice."
    assert (session.bead.status, session.bead.attempts) == ("open", 1)
    html = response.content.decode()
    assert 'data-status="cancelled"' in html and "Cancel session" not in html

    again = logged_in.post(f"{url}cancel", follow=True)
    assert again.redirect_chain == [(url, 302)]
    assert shown_messages(again) == [
        ("error", "This session is no longer live (cancelled): nothing to cancel.")
    ]


@session_db
def test_cancelling_a_finished_session_is_an_error(logged_in, repo, rq_redis):
    session = run(repo, program_agent("chatty", "1", "0"))
    response = logged_in.post(f"/sessions/{session.pk}/cancel", follow=True)
    assert shown_messages(response) == [
        ("error", "This session is no longer live (submitted): nothing to cancel.")
    ]
    session.refresh_from_db()
    assert session.status == "submitted"


@session_db
def test_cancel_from_the_page_stops_a_running_agent(logged_in, repo):
    session = claimed(repo, program_agent("sleeper"))
    runner = run_in_thread(session.pk)
    try:
        wait_for(lambda: Session.objects.get(pk=session.pk).pid)
        logged_in.post(f"/sessions/{session.pk}/cancel")
        cancelled = time.monotonic()
        runner.join(timeout=20)
        stopped_in = time.monotonic() - cancelled
    finally:
        runner.join(timeout=20)
    assert not runner.is_alive()
    print(f"the runner stopped the agent {stopped_in:.2f} s after the cancel")
    session.refresh_from_db()
    assert session.status == "cancelled" and session.exit_code is not None
    assert stopped_in < 5
    html = page(logged_in, f"/sessions/{session.pk}/")
    assert "thinking" in html and "The log is complete." in html


def live_sessions(repo, agent, n):
    for i in range(n):
        running(repo, agent, title=f"Task {i}")


@session_db
def test_the_repository_page_lists_running_sessions_in_constant_queries(logged_in, repo, agent):
    repo.max_agents = 10
    repo.save()

    def queries():
        with CaptureQueriesContext(connection) as captured:
            html = page(logged_in, f"/repos/{repo.slug}/")
        return len(captured), html

    assert "No session is running here." in queries()[1]
    live_sessions(repo, agent, 1)
    one, html = queries()
    live_sessions(repo, agent, 4)
    Session.objects.create(agent=agent, bead=Bead.objects.create(repository=repo, title="x"))
    Session.objects.filter(bead__title="x").update(status="failed")  # not live: not listed
    five, html = queries()
    print(f"repository page queries: {one} with 1 running session, {five} with 5")
    assert one == five
    rows = re.findall(r'<tr class="session" data-session="([-\w]+)".*?</tr>', html, re.S)
    assert len(rows) == 5
    live = Session.objects.filter(status="running").order_by("created_at")
    assert rows == [str(s.pk) for s in live]
    first = re.search(r'<tr class="session".*?</tr>', html, re.S).group(0)
    assert agent.name in first and "Task 0" in first
    assert f'href="/sessions/{rows[0]}/"' in first and "Running" in first
    assert re.search(r"(30:00|29:\d\d) left", first)
    assert "<td>Task 0</td>" in html  # the bead tables are still there


@session_db
def test_pause_and_resume_dispatch_flip_the_flag(logged_in, repo, rq_redis):
    url = f"/repos/{repo.slug}/"
    assert "Dispatch is paused" not in page(logged_in, url)
    response = logged_in.post(f"{url}dispatch/pause", follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert shown_messages(response)[0][1].startswith("Dispatch paused")
    repo.refresh_from_db()
    assert repo.dispatch_paused
    html = response.content.decode()
    assert "Dispatch is paused" in html and f'action="{url}dispatch/resume"' in html
    again = logged_in.post(f"{url}dispatch/pause", follow=True)
    assert shown_messages(again) == [("info", "Dispatch in app was already paused.")]
    assert queues.queue(queues.DEFAULT).count == 0

    response = logged_in.post(f"{url}dispatch/resume", follow=True)
    assert shown_messages(response)[0][1].startswith("Dispatch resumed")
    repo.refresh_from_db()
    assert not repo.dispatch_paused
    assert queues.queue(queues.DEFAULT).job_ids == ["dispatch"]
    assert f'action="{url}dispatch/pause"' in response.content.decode()


@session_db
def test_the_model_method_is_a_conditional_update(repo):
    assert repo.set_dispatch_paused(True) is True
    assert repo.set_dispatch_paused(True) is False
    other = type(repo).objects.get(pk=repo.pk)
    assert other.set_dispatch_paused(False) is True
    assert repo.set_dispatch_paused(False) is False and repo.dispatch_paused is False


@session_db
def test_run_without_a_session_worker_says_so(logged_in, rq_redis):
    response = logged_in.post("/dispatch", follow=True)
    assert response.redirect_chain == [("/", 302)]
    [(level, message)] = shown_messages(response)
    assert level == "error"
    assert text(message) == (
        "No session worker is running: start manage.py up or manage.py rqworker sessions."
    )
    assert "<code>manage.py rqworker sessions</code>" in response.content.decode()
    assert queues.queue(queues.DEFAULT).job_ids == ["dispatch"]  # asked for all the same


def session_workers():
    return Worker.all(queue=queues.queue(queues.SESSIONS))


def dispatch_done():
    return not queues.runs_pending(queues.DISPATCH)


@session_db
@pytest.mark.slow
def test_dispatch_skips_a_paused_repository_and_resume_lets_it_run(
    logged_in, repo, rq_redis, subprocess_env
):
    """A real `rqworker sessions default`: Run, then pause and resume, drive actual dispatches."""
    agent = program_agent("chatty", "2", "0")
    logged_in.post(f"/repos/{repo.slug}/dispatch/pause", follow=True)
    worker = Running(["manage.py", "rqworker", "sessions", "default"], subprocess_env)
    try:
        wait_for(lambda: len(session_workers()) == 1, timeout=60)
        bead = Bead.objects.create(repository=repo, title="Chat", scope=["src/**"])
        assert dispatch() == 0  # a free slot, a ready bead, but the repository is paused
        response = logged_in.post("/dispatch", follow=True)
        assert shown_messages(response) == [
            ("success", "Dispatch requested: 1 session worker listening.")
        ]
        wait_for(dispatch_done)  # the worker's dispatch ran, and skipped it too
        bead.refresh_from_db()
        assert bead.status == "open" and not Session.objects.exists()

        logged_in.post(f"/repos/{repo.slug}/dispatch/resume")  # asks for a dispatch
        wait_for(lambda: Session.objects.filter(status="submitted").exists(), timeout=60)
        session = Session.objects.get()
        assert (session.agent, session.bead) == (agent, bead)
        assert "line 1" in page(logged_in, f"/sessions/{session.pk}/")
    finally:
        worker.kill_group()

"""The lead's pages: the queue, a submission with its diff, review and revert."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agents import queues
from agents.models import GateResult, Session, Submission
from beads.models import Bead
from tests.factories import commits, git, land, run_lead

lead_db = pytest.mark.django_db(transaction=True)
HX = {"HTTP_HX_REQUEST": "true"}


def page(client, url, **headers):
    response = client.get(url, **headers)
    assert response.status_code == 200
    return response.content.decode()


def row(html, pk):
    """The table row of submission `pk`."""
    match = re.search(rf'<tr data-submission="{pk}".*?</tr>', html, re.S)
    assert match, f"no row for submission {pk}"
    return match.group(0)


def shown_messages(response):
    return [str(m) for m in response.context["messages"]]


def human(repo):
    repo.review_mode = "human"
    repo.save()
    return repo


def waiting(repo, agent, files=None, title="Do it"):
    """A submission the lead has gated and left awaiting review."""
    human(repo)
    bead, sub = land(repo, agent, files or {"a.txt": "1\n"}, title=title)
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"
    return bead, sub


def test_every_lead_page_needs_a_login(client, db):
    for method, url in [
        ("get", "/repos/app/lead/"),
        ("get", "/submissions/1/"),
        ("post", "/submissions/1/approve"),
        ("post", "/submissions/1/reject"),
        ("post", "/beads/app-1234/revert"),
    ]:
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/"), url


def test_review_and_revert_refuse_get(logged_in, db):
    for url in ["/submissions/1/approve", "/submissions/1/reject", "/beads/app-1234/revert"]:
        assert logged_in.get(url).status_code == 405, url


def test_unknown_things_are_404(logged_in, db):
    assert logged_in.get("/repos/nope/lead/").status_code == 404
    assert logged_in.get("/submissions/999/").status_code == 404
    assert logged_in.post("/submissions/999/approve").status_code == 404
    assert logged_in.post("/beads/nope-0000/revert").status_code == 404


@lead_db
def test_the_queue_lists_in_flight_submissions_with_position_and_gates(
    logged_in, repo, agent, rq_redis
):
    _, first = waiting(repo, agent, {"a.txt": "1\n"}, title="First thing")
    bead, second = land(repo, agent, {"b.txt": "2\n"}, title="Second <thing>")  # not gated yet
    html = page(logged_in, f"/repos/{repo.slug}/lead/")
    assert 'hx-trigger="every 2s"' in html and f'hx-get="/repos/{repo.slug}/lead/"' in html

    one = row(html, first.pk)
    assert '<td class="n position">1</td>' in one
    assert 'data-status="awaiting_review"' in one and "Awaiting review" in one
    assert f'href="/submissions/{first.pk}/"' in one and "First thing" in one
    assert agent.name in one
    for name in ["paths", "scope", "size", "apply", "check"]:
        assert re.search(rf'class="gate pass" data-gate="{name}".*?<b>pass</b>', one), name
    assert re.search(r'class="gate waiting" data-gate="review".*?<b>waiting</b>', one)
    assert re.search(r"<small>\d+ ms</small>", one)

    two = row(html, second.pk)
    assert '<td class="n position">2</td>' in two
    assert f"<code>{bead.id}</code> Second &lt;thing&gt;" in two
    assert "not started" in two

    partial = page(logged_in, f"/repos/{repo.slug}/lead/", **HX)
    assert "<html" not in partial and partial.lstrip().startswith('<div id="lead-queue"')
    assert 'hx-trigger="every 2s"' in partial and 'hx-swap="outerHTML"' in partial


@lead_db
def test_polling_stops_when_nothing_is_in_flight(logged_in, repo, agent, rq_redis):
    bead, sub = land(repo, agent, {"src/new.py": "x = 1\n"}, title="Add x")
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "committed"

    partial = page(logged_in, f"/repos/{repo.slug}/lead/", **HX)
    assert "hx-trigger" not in partial and "hx-get" not in partial
    assert "Nothing in flight" in partial
    finished = row(partial, sub.pk)
    assert 'data-status="committed"' in finished and sub.commit_sha[:12] in finished
    # The branch's newest commit links to the repository page's anchor of its bead.
    newest = re.search(rf'<tr data-sha="{sub.commit_sha}">.*?</tr>', partial, re.S).group(0)
    assert f"Add x ({bead.id})" in newest
    assert f'href="/beads/{bead.id}/"' in newest
    older = re.findall(r'<tr data-sha="(\w+)">(.*?)</tr>', partial, re.S)
    assert len(older) == commits(repo)
    assert all("bead-link" not in cells for sha, cells in older if sha != sub.commit_sha)
    assert "hx-trigger" not in page(logged_in, f"/repos/{repo.slug}/lead/")


@lead_db
def test_a_refused_submission_shows_its_reason(logged_in, repo, agent, rq_redis):
    _, sub = land(repo, agent, {"README.md": "changed\n"}, scope=["src/**"])
    run_lead(repo)
    finished = row(page(logged_in, f"/repos/{repo.slug}/lead/"), sub.pk)
    assert 'data-status="rejected"' in finished and "scope gate" in finished


@lead_db
def test_the_submission_page_colours_and_escapes_the_diff(logged_in, repo, agent, rq_redis):
    repo.check_command = "python3 -c \"print('all 7 tests passed')\""
    repo.save()
    files = {"src/app.py": "print('bye')\n", "src/page.html": "<script>alert(1)</script>\n"}
    _, sub = land(repo, agent, files)
    run_lead(repo)
    sub.refresh_from_db()
    html = page(logged_in, f"/submissions/{sub.pk}/")
    assert "<script>alert(1)</script>" not in html and "&lt;" in html
    added = re.findall(r'<tr class="add">.*?</tr>', html, re.S)
    assert any("alert" in r and "&lt;" in r and "<script" not in r for r in added)
    removed = re.search(r'<tr class="del"><td class="ln">1</td><td class="ln"></td>.*?</tr>', html)
    assert "hello" in removed.group(0) and '<span class="nb">print</span>' in removed.group(0)
    assert any("bye" in r for r in added)
    assert '<tr class="hunk-head"><td colspan="4">@@ -1,1 +1,1 @@</td></tr>' in html
    assert "<summary><code>src/app.py</code>" in html
    assert "<summary><code>src/page.html</code>" in html
    assert re.search(r'<pre class="detail">Passed.\s+all 7 tests passed', html)
    assert 'data-status="committed"' in html and f'id="commit-sha">{sub.commit_sha}<' in html
    assert "hx-trigger" not in html  # finished: nothing to poll
    assert "Approve" not in html


@lead_db
def test_approving_lands_the_commit_once(logged_in, user, repo, agent, rq_redis):
    bead, sub = waiting(repo, agent)
    url = f"/submissions/{sub.pk}/"
    html = page(logged_in, url)
    assert 'data-status="awaiting_review"' in html and 'hx-trigger="every 2s"' in html
    assert f'action="{url}approve"' in html and f'action="{url}reject"' in html
    assert "csrfmiddlewaretoken" in html

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"{url}approve").status_code == 403
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"

    before = commits(repo)
    response = logged_in.post(f"{url}approve", follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert shown_messages(response) == ["Approved: the lead will commit it."]
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "committed" and sub.reviewed_by == user
    assert commits(repo) == before + 1
    html = page(logged_in, url)
    assert sub.commit_sha in html and "hx-trigger" not in html
    assert "Approve</button>" not in html

    again = logged_in.post(f"{url}approve", follow=True)
    assert again.status_code == 200 and again.redirect_chain == [(url, 302)]
    assert shown_messages(again) == ["This submission is no longer waiting for review."]
    assert commits(repo) == before + 1


@lead_db
def test_rejecting_returns_the_bead_with_the_reason(logged_in, repo, agent, rq_redis):
    bead, sub = waiting(repo, agent)
    url = f"/submissions/{sub.pk}/"
    response = logged_in.post(f"{url}reject", {"reason": "Wrong approach"}, follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert shown_messages(response) == [f"Rejected: {bead.id} is back on the hook."]
    sub.refresh_from_db()
    bead.refresh_from_db()
    assert sub.status == "rejected" and sub.reason == "Wrong approach"
    assert bead.status == "open" and bead.last_failure == "Wrong approach"
    assert "Wrong approach" in response.content.decode()
    late = logged_in.post(f"{url}approve", follow=True)
    assert shown_messages(late) == ["This submission is no longer waiting for review."]


@lead_db
def test_rejecting_without_a_reason_names_the_reviewer(logged_in, repo, agent, rq_redis):
    _, sub = waiting(repo, agent)
    logged_in.post(f"/submissions/{sub.pk}/reject", {"reason": "  "})
    sub.refresh_from_db()
    assert sub.status == "rejected" and sub.reason == "Rejected by alice."


@lead_db
def test_revert_queues_a_job_that_reopens_the_bead(logged_in, repo, agent, rq_redis):
    bead, sub = land(repo, agent, {"src/app.py": "print('new')\n"}, title="Change app")
    run_lead(repo)
    bead.refresh_from_db()
    landed = bead.commit_sha
    repo_page = page(logged_in, f"/repos/{repo.slug}/")
    assert f'action="/beads/{bead.id}/revert"' in repo_page
    assert f'href="/repos/{repo.slug}/lead/"' in repo_page

    response = logged_in.post(f"/beads/{bead.id}/revert", follow=True)
    assert response.redirect_chain == [(f"/repos/{repo.slug}/lead/", 302)]
    assert any(m.startswith("Revert queued") for m in shown_messages(response))
    assert queues.lead_queue(repo).job_ids == [f"revert-{bead.id}"]
    before = commits(repo)
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "open" and bead.commit_sha == ""
    assert commits(repo) == before + 1
    message = git(repo.canonical_path, "log", "-1", "--format=%B", repo.branch)
    assert message.startswith(f'Revert "Change app" ({bead.id})')
    assert f"Reverts: {landed}" in message
    assert f'action="/beads/{bead.id}/revert"' not in page(logged_in, f"/repos/{repo.slug}/")


@lead_db
def test_reverting_an_open_bead_is_refused(logged_in, repo, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Not landed")
    closed_by_hand = Bead.objects.create(repository=repo, title="Closed", status="closed")
    for target in (bead, closed_by_hand):
        response = logged_in.post(f"/beads/{target.id}/revert", follow=True)
        assert response.redirect_chain == [(f"/repos/{repo.slug}/lead/", 302)]
        [message] = response.context["messages"]
        assert message.level_tag == "error" and "Only a closed bead" in str(message)
    assert queues.lead_queue(repo).count == 0
    assert 'class="inline revert"' not in page(logged_in, f"/repos/{repo.slug}/")


def add_submissions(repo, agent, n):
    """n submissions straight in the database, alternately in flight and finished."""
    statuses = ["queued", "committed", "checking", "rejected", "awaiting_review", "failed"]
    for i in range(n):
        bead = Bead.objects.create(repository=repo, title=f"b{i}", status="review")
        session = Session.objects.create(agent=agent, bead=bead, status="submitted")
        sub = Submission.objects.create(
            session=session, repository=repo, bead=bead, status=statuses[i % len(statuses)]
        )
        for gate in ["paths", "scope", "size"]:
            GateResult.objects.create(submission=sub, gate=gate, passed=True, duration_ms=3)


@pytest.mark.django_db
def test_the_queue_query_count_does_not_grow_with_submissions(logged_in, repo, agent):
    def queries(**headers):
        with CaptureQueriesContext(connection) as captured:
            page(logged_in, f"/repos/{repo.slug}/lead/", **headers)
        return len(captured)

    add_submissions(repo, agent, 2)
    few, few_partial = queries(), queries(**HX)
    add_submissions(repo, agent, 10)
    assert Submission.objects.count() == 12
    many, many_partial = queries(), queries(**HX)
    print(f"lead page queries: {few} with 2 submissions, {many} with 12")
    assert few == many and few_partial == many_partial


@pytest.mark.django_db
def test_the_submission_page_query_count_does_not_grow_with_gates(logged_in, repo, agent):
    add_submissions(repo, agent, 1)
    sub = Submission.objects.get()

    def queries():
        with CaptureQueriesContext(connection) as captured:
            page(logged_in, f"/submissions/{sub.pk}/")
        return len(captured)

    few = queries()
    for gate in ["apply", "check", "review"]:
        GateResult.objects.create(submission=sub, gate=gate, passed=None)
    assert queries() == few

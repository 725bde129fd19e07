"""The review queue (/review/): what waits for a person across repositories,
its filters and order, the navigation's count, roles, approving and
rejecting from the queue with htmx, and the review figures."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Approval, Session, Submission
from agents.reports import reviews
from beads.models import Bead
from workspace import roles

HX = {"HTTP_HX_REQUEST": "true"}


def waiting(
    repo, agent, title="Do it", lines=5, risk="low", owners=(), filed_by=None, labels=(), age=0
):
    """A submission awaiting review, as the lead leaves it (rows only)."""
    bead = Bead.objects.create(
        repository=repo, title=title, status="review", filed_by=filed_by, labels=list(labels)
    )
    session = Session.objects.create(agent=agent, bead=bead, status="submitted")
    at = timezone.now() - timedelta(minutes=age)
    return Submission.objects.create(
        session=session,
        repository=repo,
        bead=bead,
        status="awaiting_review",
        lines=lines,
        risk=risk,
        people_needed=1,
        review_owners=list(owners),
        review_why=[f"`{title}` needs a person"],
        queued_at=at,
        review_requested_at=at,
    )


def rows(html):
    return [int(pk) for pk in re.findall(r'<tr data-submission="(\d+)"', html)]


def test_the_queue_lists_every_waiting_submission_oldest_first(logged_in, make_repo, agent):
    one, two = make_repo("one"), make_repo("two")
    new = waiting(one, agent, "new", age=1)
    old = waiting(two, agent, "old", age=30)
    Submission.objects.create(
        session=Session.objects.create(agent=agent, bead=old.bead, status="submitted"),
        repository=one,
        bead=old.bead,
        status="queued",
    )
    html = logged_in.get("/review/").content.decode()
    assert rows(html) == [old.pk, new.pk]
    assert "`old` needs a person" in html and 'class="risk low"' in html
    assert f'href="/submissions/{old.pk}/#request-changes"' in html
    assert 'src="/static/review.js"' in html


def test_the_filters_narrow_by_repository_owner_label_size_and_risk(
    logged_in, user, make_repo, agent
):
    one, two = make_repo("one"), make_repo("two")
    a = waiting(one, agent, "a", lines=5, risk="low", filed_by=user, labels=["ui"])
    b = waiting(two, agent, "b", lines=300, risk="high", labels=["db"])
    c = waiting(one, agent, "c", lines=60, risk="medium", owners=["db-team"])
    get = lambda q: rows(logged_in.get(f"/review/?{q}", **HX).content.decode())  # noqa: E731
    assert get("repo=one") == [a.pk, c.pk]
    assert get("owner=alice") == [a.pk]
    assert get("label=db") == [b.pk]
    assert get("size=xs") == [a.pk] and get("size=m") == [c.pk] and get("size=l") == [b.pk]
    assert get("risk=high") == [b.pk]
    assert get("mine=1") == [a.pk, b.pk]  # c asks db-team first; alice is not in it
    assert get("size=nonsense&risk=bad") == [a.pk, b.pk, c.pk]  # an unknown value filters nothing
    partial = logged_in.get("/review/?repo=none", **HX).content.decode()
    assert "<html" not in partial and "Nothing waiting matches these filters." in partial


def test_the_navigation_counts_what_waits_for_me(logged_in, user, make_repo, agent):
    repo = make_repo("one")
    waiting(repo, agent, "anyone")
    waiting(repo, agent, "db", owners=["db-team"])
    mine = waiting(repo, agent, "mine", owners=["alice"])
    own = waiting(repo, agent, "own", filed_by=user)
    assert 'data-count-url="/review/count"' in logged_in.get("/review/").content.decode()
    count = lambda: logged_in.get("/review/count").content.decode()  # noqa: E731
    assert '<span class="badge" title="3 waiting for you">3</span>' in count()  # not db-team's
    user.groups.add(Group.objects.create(name="db-team"))
    assert ">4</span>" in count()
    repo.review_by_other = True
    repo.save()
    assert ">3</span>" in count()  # not her own bead's
    Approval.objects.create(submission=mine, person=user)
    assert ">2</span>" in count()
    assert own.pk
    with CaptureQueriesContext(connection) as queries:
        count()
    assert len(queries) <= 6  # session, user, groups, the rows: not one per submission


def test_a_viewer_sees_no_buttons_and_may_not_approve(client, viewer, repo, agent):
    sub = waiting(repo, agent)
    client.force_login(viewer)
    html = client.get("/review/").content.decode()
    assert rows(html) == [sub.pk] and "Approve</button>" not in html and "reject-form" not in html
    assert client.post(f"/submissions/{sub.pk}/approve", **HX).status_code == 403
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"


@pytest.mark.django_db(transaction=True)
def test_approving_from_the_queue_removes_the_row_without_a_page(logged_in, repo, agent, rq_redis):
    sub = waiting(repo, agent)
    response = logged_in.post(f"/submissions/{sub.pk}/approve", **HX)
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and "<tr" not in html
    assert 'id="review-status"' in html and 'hx-swap-oob="true"' in html
    assert "Approved: the lead will commit it." in html
    assert response["HX-Trigger"] == "review-changed" and "HX-Reswap" not in response
    sub.refresh_from_db()
    assert sub.status == "approved"
    late = logged_in.post(f"/submissions/{sub.pk}/approve", **HX).content.decode()
    assert "no longer waiting for review" in late


def test_rejecting_from_the_queue_takes_the_reason(logged_in, repo, agent):
    sub = waiting(repo, agent)
    html = logged_in.post(
        f"/submissions/{sub.pk}/reject", {"reason": "Too broad"}, **HX
    ).content.decode()
    assert f"Rejected: {sub.bead_id} is back on the hook." in html
    sub.refresh_from_db()
    assert sub.status == "rejected" and sub.reason == "Too broad"


def test_review_by_other_keeps_the_row_and_says_why(logged_in, user, repo, agent):
    repo.review_by_other = True
    repo.save()
    sub = waiting(repo, agent, filed_by=user)
    response = logged_in.post(f"/submissions/{sub.pk}/approve", **HX)
    assert response["HX-Reswap"] == "none"
    assert "wants its work reviewed by another person" in response.content.decode()
    sub.refresh_from_db()
    assert sub.status == "awaiting_review"


def test_the_queue_query_count_does_not_grow_with_rows(logged_in, repo, agent):
    for n in range(3):
        waiting(repo, agent, f"t{n}")
    with CaptureQueriesContext(connection) as few:
        logged_in.get("/review/")
    for n in range(12):
        waiting(repo, agent, f"u{n}", labels=["x"])
    with CaptureQueriesContext(connection) as many:
        logged_in.get("/review/")
    assert len(many) == len(few)


# The figures.


def decided(sub, who, approve, after_minutes):
    at = sub.review_requested_at + timedelta(minutes=after_minutes)
    if approve:
        Approval.objects.create(submission=sub, person=who, at=at)
        Submission.objects.filter(pk=sub.pk).update(
            status="committed", approvals=1, reviewed_by=who, reviewed_at=at, first_review_at=at
        )
    else:
        Submission.objects.filter(pk=sub.pk).update(
            status="rejected", reviewed_by=who, reviewed_at=at, first_review_at=at
        )


def test_the_figures_count_reviews_times_and_first_pass_rates(
    logged_in, user, repo, agent, settings
):
    settings.METRICS_TOKEN, settings.METRICS_ALLOW = "scrape", []
    bob = get_user_model().objects.create_user("bob")
    roles.assign(bob, roles.OPERATOR)
    a, b, c = (waiting(repo, agent, t, age=60) for t in "abc")
    decided(a, user, True, 10)
    decided(b, user, False, 20)
    decided(c, bob, True, 30)
    again = waiting(repo, agent, "b-again", age=5)  # b's second try, approved
    Submission.objects.filter(pk=again.pk).update(bead=b.bead)
    again.refresh_from_db()
    decided(again, bob, True, 1)
    figures = reviews.figures(30)
    assert figures.reviewed == 4 and figures.approvals == 3 and figures.changes_requested == 1
    assert figures.first_review_median_s == 15 * 60
    assert [(p["person"], p["approved"], p["rejected"]) for p in figures.per_person] == [
        ("alice", 1, 1),
        ("bob", 2, 0),
    ]
    assert figures.per_person[0]["per_day"] == round(2 / 30, 2)
    assert figures.per_agent == [
        {"agent": agent.name, "first_pass": 2, "reviewed": 3, "rate": 0.667}
    ]
    html = logged_in.get("/review/figures/").content.decode()
    assert 'id="approvals">3<' in html and "67%" in html
    metrics = logged_in.get("/metrics", headers={"Authorization": "Bearer scrape"}).content.decode()
    assert 'corral_reviews_total{decision="approved",person="bob"} 2.0' in metrics
    assert 'corral_reviews_total{decision="changes_requested",person="alice"} 1.0' in metrics
    assert f'corral_review_first_pass_ratio{{agent="{agent.name}"}} 0.667' in metrics
    assert "corral_review_first_seconds_count 4.0" in metrics


def test_the_queue_shows_the_oldest_and_counts_the_rest(logged_in, repo, agent, monkeypatch):
    from corral.pages import review

    monkeypatch.setattr(review, "SHOWN", 2)
    subs = [waiting(repo, agent, f"s{n}", age=10 - n) for n in range(3)]
    html = logged_in.get("/review/").content.decode()
    assert rows(html) == [subs[0].pk, subs[1].pk]
    assert "and 1 more, newer: clear these first." in html


def test_learnings_waiting_for_approval_are_listed_below_the_queue_with_their_source(
    logged_in, repo, agent
):
    from knowledge import capture, curate

    bead = Bead.objects.create(repository=repo, title="Report the items", scope=["**"])
    session = Session.objects.create(agent=agent, bead=bead)
    lesson = capture.from_rejection(session, "Every job must name its owner.", "alice")
    html = logged_in.get("/review/").content.decode()
    section = html[html.index('id="waiting-learnings"') :]
    assert f'data-learning="{lesson.pk}"' in section
    assert f"alice&#x27;s rejection of {bead.pk}" in section
    curate.approve(lesson)
    html = logged_in.get("/review/").content.decode()
    assert f'data-learning="{lesson.pk}"' not in html and "None waiting." in html

"""Pictures over time, drawn on the server as SVG with their figures as a
table: a plan's burn-down, each repository's landings per day on the
overview, the lead queue's depth."""

import re
from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents.models import Agent, Session, Submission
from agents.reports import trends
from beads.models import Bead, Plan, Wave, WaveBead
from workspace.models import Workspace


def html_of(client, url):
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


def chart(html, dom_id):
    """The <figure> of the chart with this id."""
    return html.split(f'<figure class="chart" id="{dom_id}">')[1].split("</figure>")[0]


def figure_rows(figure):
    """The figures table's body rows, as lists of cell texts."""
    body = figure.split("<tbody>")[1].split("</tbody>")[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in body.split("</tr>")[:-1]]


def submission(repo, agent, status, queued, finished=None):
    bead = Bead.objects.create(repository=repo, title=f"{status} work")
    session = Session.objects.create(agent=agent, bead=bead, status="submitted")
    return Submission.objects.create(
        session=session,
        repository=repo,
        bead=bead,
        status=status,
        queued_at=queued,
        finished_at=finished,
    )


def test_a_plans_burn_down_has_a_point_at_its_start_each_close_and_now(logged_in, repo):
    start = timezone.now() - timedelta(hours=3)
    plan = Plan.objects.create(workspace=Workspace.default(), name="Q3", status="active")
    Plan.objects.filter(pk=plan.pk).update(created_at=start)
    wave = Wave.objects.create(plan=plan, number=1)
    for n, closed in enumerate([start + timedelta(hours=1), start + timedelta(hours=2), None]):
        bead = Bead.objects.create(
            repository=repo,
            title=f"bead {n}",
            status="closed" if closed else "open",
            closed_at=closed,
        )
        WaveBead.objects.create(wave=wave, bead=bead)

    figure = chart(html_of(logged_in, plan.get_absolute_url()), "chart-burndown")
    assert figure.count('<circle class="point"') == 2 * 4  # done and left: start, 2 closes, now
    assert [row[1:] for row in figure_rows(figure)] == [
        ["0", "3"],
        ["1", "2"],
        ["2", "1"],
        ["2", "1"],
    ]
    assert "done 0 to 2 (at most 2); left 3 to 1 (at most 3)" in figure  # its <desc>


def test_a_draft_plan_has_no_burn_down(logged_in, repo):
    plan = Plan.objects.create(workspace=Workspace.default(), name="Someday")
    wave = Wave.objects.create(plan=plan, number=1)
    WaveBead.objects.create(wave=wave, bead=Bead.objects.create(repository=repo, title="x"))
    assert 'id="chart-burndown"' not in html_of(logged_in, plan.get_absolute_url())


def test_the_overview_draws_each_repositorys_landings_per_day(logged_in, repo, make_repo):
    other = make_repo("other")
    agent = Agent.objects.create(name="lander")
    now = timezone.now()
    yesterday = now - timedelta(days=1)
    for target, when in [(repo, now), (repo, now), (repo, yesterday), (other, now)]:
        submission(repo=target, agent=agent, status="committed", queued=when, finished=when)
    submission(repo=repo, agent=agent, status="rejected", queued=now, finished=now)  # not landed
    submission(repo=other, agent=agent, status="committed", queued=now - timedelta(days=30),
               finished=now - timedelta(days=30))  # fmt: skip  # before the chart's days

    figure = chart(html_of(logged_in, "/"), "chart-landings")
    bars = re.findall(r"<title>(.*?)</title>", figure)
    assert len(bars) == 3  # app today and yesterday, other today
    assert f"app, {timezone.localdate(now):%b %d}: 2 landings" in bars
    rows = figure_rows(figure)
    assert len(rows) == 14 and rows[-1][1:] == ["2", "1"] and rows[-2][1:] == ["1", "0"]


def test_the_lead_queues_depth_counts_what_was_unfinished_at_each_sample(repo):
    agent = Agent.objects.create(name="queuer")
    now = timezone.now()
    hour_ago = now - timedelta(hours=1)
    submission(repo, agent, "committed", hour_ago, now - timedelta(minutes=30))
    submission(repo, agent, "queued", now - timedelta(minutes=45))
    submission(repo, agent, "committed", now - timedelta(days=3), now - timedelta(days=2))  # old

    points = trends.queue_depth(repo, now=now, samples=5)  # every 15 minutes from an hour ago
    assert [p.at for p in points] == [hour_ago + timedelta(minutes=15 * i) for i in range(5)]
    # Both from the one queued 45 minutes ago; the first is gone at its finish, 30 ago.
    assert [p.values for p in points] == [[1], [2], [1], [1], [1]]


def test_the_lead_page_draws_the_queues_depth(logged_in, repo):
    agent = Agent.objects.create(name="queuer")
    submission(repo, agent, "queued", timezone.now() - timedelta(minutes=10))
    figure = chart(html_of(logged_in, f"/repos/{repo.slug}/lead/"), "chart-queue-depth")
    assert figure.count('<circle class="point"') == trends.DEPTH_SAMPLES
    assert len(figure_rows(figure)) == trends.DEPTH_SAMPLES
    assert '<title id="chart-queue-depth-title">' in figure and "queue 1 to 1" in figure


def test_the_charts_queries_do_not_grow_with_the_history(logged_in, repo):
    agent = Agent.objects.create(name="many")
    now = timezone.now()

    def queries(url):
        with CaptureQueriesContext(connection) as seen:
            html_of(logged_in, url)
        return len(seen)

    submission(repo, agent, "committed", now - timedelta(hours=2), now - timedelta(hours=1))
    before = {url: queries(url) for url in ("/", f"/repos/{repo.slug}/lead/")}
    for hours in range(2, 30):
        when = now - timedelta(hours=hours)
        submission(repo, agent, "committed", when, when + timedelta(minutes=5))
    after = {url: queries(url) for url in before}
    assert after == before

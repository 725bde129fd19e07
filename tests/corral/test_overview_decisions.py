"""The overview shows plans in progress and the next decisions a person must
make, each one click away."""

from django.utils.html import escape

from agents.models import GateResult, Session, Submission
from beads import plans
from beads.models import Bead
from knowledge.models import Learning
from tests.factories import CHECK_REFUSAL, refused_by_check


def test_reviews_blocked_beads_failing_checks_and_plans_are_on_the_overview(logged_in, repo, agent):
    waiting = Bead.objects.create(repository=repo, title="needs eyes", status="review")
    session = Session.objects.create(agent=agent, bead=waiting, status="submitted")
    sub = Submission.objects.create(
        session=session, repository=repo, bead=waiting, status="awaiting_review"
    )
    stuck = Bead.objects.create(repository=repo, title="stuck")
    stuck.block("needs a decision on the API")
    failing = Bead.objects.create(repository=repo, title="flaky", attempts=1)
    failed = Session.objects.create(agent=agent, bead=failing, status="failed")
    refused = Submission.objects.create(
        session=failed, repository=repo, bead=failing, status="failed"
    )
    GateResult.objects.create(submission=refused, gate="check", passed=False, detail="1 failed")
    plan = plans.start(repo.workspace, "Spring", [failing], 4)
    done = plans.start(repo.workspace, "Old", [stuck], 4)
    done.status = "done"
    done.save()
    html = logged_in.get("/").content.decode()
    decisions = html.split('id="decisions"')[1].split('id="overview-plans"')[0]
    assert f'href="/submissions/{sub.pk}/">Review {waiting.id}' in decisions
    assert f'href="/beads/{stuck.id}/">Unblock {stuck.id}: needs a decision on the API' in decisions
    assert f'href="/beads/{failing.id}/">Check fails on {failing.id}' in decisions
    listed = html.split('id="overview-plans"')[1]
    assert f'href="/plans/{plan.pk}/">Spring' in listed and "Old" not in listed


def test_nothing_waiting_says_so(logged_in, repo):
    html = logged_in.get("/").content.decode()
    assert "Nothing waits for a person." in html and "No plan in progress." in html


OWNER_LESSON = (
    "check gate: AssertionError: jobs/report.py: every module in jobs/ must start with the line "
    '"# owner: ops"'
)


def decisions_of(client):
    html = client.get("/").content.decode()
    return html.split('id="decisions"')[1].split('id="overview-plans"')[0]


def test_a_lesson_its_refusals_taught_comes_first_with_its_text_and_the_bead_only_once(
    logged_in, repo, agent, rq_redis
):
    bead = Bead.objects.create(repository=repo, title="Report the items", scope=["**"])
    refused_by_check(bead, agent, times=3)
    assert bead.status == "blocked"
    learning = Learning.objects.get()
    decisions = decisions_of(logged_in)
    first = decisions.split('<p class="decision ')[1]
    assert first.startswith('lesson" data-kind="lesson">')
    assert (
        f'<a href="/knowledge/{learning.pk}/">Approve the lesson learned from '
        f"{bead.id}&#x27;s refusal: {escape(OWNER_LESSON)}</a>"
    ) in first
    assert f"{bead.id} is blocked after 3 failed attempts" in first
    # Approving the lesson is what the bead waits for: it is not listed again.
    assert decisions.count(bead.id) == 2  # the link's text and the note under it


def test_a_blocked_bead_shows_the_line_its_failure_says_most_not_the_whole_output(logged_in, repo):
    stuck = Bead.objects.create(repository=repo, title="stuck")
    stuck.block(f"Blocked after 3 failed attempts. Last: {CHECK_REFUSAL}")
    decisions = decisions_of(logged_in)
    headline = (
        "Blocked after 3 failed attempts. Last: check gate: Exit code 1. AssertionError: "
        'jobs/report.py: every module in jobs/ must start with the line "# owner: ops"'
    )
    assert f'href="/beads/{stuck.id}/">Unblock {stuck.id}: {escape(headline)}</a>' in decisions
    assert "Traceback" not in decisions and "Ran 4 tests" not in decisions


def test_reviews_waiting_in_a_repository_are_one_decision_going_to_the_oldest_then_the_next(
    logged_in, repo, agent
):
    subs = []
    for title in ("first", "second", "third"):
        bead = Bead.objects.create(repository=repo, title=title, status="review")
        session = Session.objects.create(agent=agent, bead=bead, status="submitted")
        subs.append(
            Submission.objects.create(
                session=session, repository=repo, bead=bead, status="awaiting_review"
            )
        )
    decisions = decisions_of(logged_in)
    assert f'<a href="/submissions/{subs[0].pk}/">Review 3 app submissions</a>' in decisions
    page = logged_in.get(f"/submissions/{subs[0].pk}/").content.decode()
    next_review = page.split('id="next-review"')[1].split("</p>")[0]
    assert (
        f'href="/submissions/{subs[1].pk}/">Next review in app: <code>{subs[1].bead_id}</code>'
        in next_review
    )
    assert "2 waiting besides this one" in next_review
    last = logged_in.get(f"/submissions/{subs[2].pk}/").content.decode()
    assert f'href="/submissions/{subs[0].pk}/"' in last.split('id="next-review"')[1]


def test_a_bead_a_person_blocked_after_a_refusal_is_theirs_to_unblock_beside_its_lesson(
    logged_in, repo, agent, rq_redis
):
    bead = Bead.objects.create(repository=repo, title="Report the items", scope=["**"])
    refused_by_check(bead, agent)
    assert bead.block("Waiting for the ops team to name an owner.")
    decisions = decisions_of(logged_in)
    assert f"Approve the lesson learned from {bead.id}&#x27;s refusal" in decisions
    assert f"Unblock {bead.id}: Waiting for the ops team to name an owner." in decisions

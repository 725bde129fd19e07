"""The overview shows plans in progress and the next decisions a person must
make, each one click away."""

from agents.models import GateResult, Session, Submission
from beads import plans
from beads.models import Bead


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

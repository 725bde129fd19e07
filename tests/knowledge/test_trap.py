"""Knowledge pays: the first agent falls into a repository's convention, the
refusal becomes a learning, the same refusal in another repository approves
it, and the next bead there lands on its first try because it was injected."""

import pytest

from knowledge.models import Injection, Learning
from tests.knowledge.trap import trapped_repos, work
from workspace.audit import AuditEntry

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def quick_limits(settings):
    settings.KILL_GRACE_SECONDS = 1
    settings.WATCH_INTERVAL_SECONDS = 0.2


def test_the_second_agent_avoids_the_trap_the_first_fell_into(make_source, workspace, rq_redis):
    billing, shipping = trapped_repos(make_source, workspace)
    first, first_session = work(billing, "Add an invoice module", "src/invoice.py")
    assert first.status == "open" and first_session.status == "failed"
    assert "every module must start with the line" in first.last_failure
    lesson = Learning.objects.get()
    assert lesson.status == "candidate" and lesson.source_bead == first
    assert lesson.files == ["src/invoice.py"] and "SPDX-License-Identifier" in lesson.title

    # Not yet approved: the next agent is not told, and falls in too.
    second, _ = work(shipping, "Add a module for parcel rates", "src/rates.py")
    assert second.status == "open"
    lesson.refresh_from_db()
    assert lesson.occurrences == 2 and Learning.objects.count() == 1  # folded
    # The same gate said the same thing on a second bead: the lesson approved
    # itself, and the audit says so.
    assert lesson.status == "approved"
    assert AuditEntry.objects.filter(action="learning_auto", target=f"learning #{lesson.pk}")
    third, session = work(shipping, "Add a module for customs duties", "src/duties.py")
    assert third.status == "closed" and session.status == "succeeded"
    assert "SPDX-License-Identifier: MIT" in session.context
    injection = Injection.objects.get(session=session)
    assert injection.learning == lesson and injection.outcome == "landed"
    lesson.refresh_from_db()
    assert lesson.helpful == 1 and lesson.utility == pytest.approx(0.55)

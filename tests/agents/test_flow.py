"""The moves across tables (agents/moves/), each one transaction."""

import pytest

from agents.models import Session, Submission
from agents.moves import lifecycle, outcomes
from beads.models import Bead, Dependency
from tests.factories import make_patch, run_lead, submit

pytestmark = pytest.mark.django_db(transaction=True)


def child_of(parent, repo, title):
    bead = Bead.objects.create(repository=repo, title=title, scope=["**"])
    Dependency.objects.create(issue=bead, depends_on=parent, type=Dependency.Type.PARENT_CHILD)
    return bead


def land(bead, agent, files):
    base, patch = make_patch(bead.repository, files)
    submit(bead, agent, patch, base)
    run_lead(bead.repository)
    bead.refresh_from_db()
    assert bead.status == "closed", bead.last_failure


def status(bead):
    bead.refresh_from_db()
    return bead.status


def test_an_epic_closes_when_its_last_child_lands(repo, agent, rq_redis):
    epic = Bead.objects.create(repository=repo, title="Epic", issue_type="epic")
    first, second = child_of(epic, repo, "First"), child_of(epic, repo, "Second")
    land(first, agent, {"one.txt": "1\n"})
    assert status(epic) == "open"
    land(second, agent, {"two.txt": "2\n"})
    assert status(epic) == "closed"
    assert epic.close_reason == "all its children landed"


@pytest.mark.slow
def test_closing_climbs_to_the_grandparent_epic(repo, agent, rq_redis):
    top = Bead.objects.create(repository=repo, title="Top", issue_type="epic")
    middle = child_of(top, repo, "Middle")
    middle.issue_type = "epic"
    middle.save()
    leaf = child_of(middle, repo, "Leaf")
    land(leaf, agent, {"leaf.txt": "x\n"})
    assert status(middle) == "closed" and status(top) == "closed"


def test_an_epic_with_a_child_still_open_stays_open(repo, agent, rq_redis):
    epic = Bead.objects.create(repository=repo, title="Epic", issue_type="epic")
    done, _ = child_of(epic, repo, "Done"), child_of(epic, repo, "Not yet")
    land(done, agent, {"done.txt": "d\n"})
    assert status(epic) == "open"


def test_a_lost_session_returns_its_bead_once(repo, agent):
    bead = Bead.objects.create(repository=repo, title="x", scope=["**"])
    session = lifecycle.claim(agent, bead=bead)
    other = Session.objects.get(pk=session.pk)
    assert lifecycle.lose(session)
    assert not lifecycle.lose(other)  # the second process loses the race and changes nothing
    bead.refresh_from_db()
    assert bead.status == "open" and bead.attempts == 1
    assert bead.last_failure == "The session was lost: its lease expired."


@pytest.mark.slow
def test_a_refusal_after_a_commit_changes_nothing(repo, agent, rq_redis):
    bead = Bead.objects.create(repository=repo, title="x", scope=["**"])
    base, patch = make_patch(repo, {"x.txt": "x\n"})
    sub = submit(bead, agent, patch, base)
    run_lead(repo)
    sub.refresh_from_db()
    assert sub.status == "committed"
    assert not outcomes.refuse(sub, "failed", "too late")
    bead.refresh_from_db()
    assert bead.status == "closed" and bead.attempts == 0


def test_hand_in_stores_what_the_patch_changes(repo, agent):
    bead = Bead.objects.create(repository=repo, title="x", scope=["**"])
    base, patch = make_patch(repo, {"a.txt": "1\n2\n", "src/app.py": "print('bye')\n"})
    sub = submit(bead, agent, patch, base)
    session = Session.objects.get(pk=sub.session_id)
    assert session.changed_files == ["a.txt", "src/app.py"]
    assert session.patch_summary == {
        "files": 2,
        "lines": 4,
        "added": 3,
        "removed": 1,
        "binary": [],
    }


def test_a_train_lands_the_others_when_one_member_was_done_with_meanwhile(repo, agent, rq_redis):
    subs = []
    for i in range(3):
        bead = Bead.objects.create(repository=repo, title=f"b{i}", scope=["**"])
        base, patch = make_patch(repo, {f"{i}.txt": "x\n"})
        subs.append(submit(bead, agent, patch, base))
    for sub in subs:
        assert sub.start_checking()
    assert outcomes.refuse(Submission.objects.get(pk=subs[1].pk), "failed", "The lead failed.")
    outcomes.land_many([(sub, str(i) * 40) for i, sub in enumerate(subs)])
    for sub in subs:
        sub.refresh_from_db()
        sub.bead.refresh_from_db()
        sub.session.refresh_from_db()
    assert [sub.status for sub in subs] == ["committed", "failed", "committed"]
    assert [sub.commit_sha for sub in subs] == ["0" * 40, "", "2" * 40]
    assert [sub.bead.status for sub in subs] == ["closed", "open", "closed"]
    assert [sub.bead.commit_sha for sub in subs] == ["0" * 40, "", "2" * 40]
    assert [sub.session.status for sub in subs] == ["succeeded", "failed", "succeeded"]

"""The goal's scenario, small: demo agents land beads while a person pushes
commits straight to the upstream at random moments. Every bead and every
person's commit is on the upstream exactly once, the history is linear, the
upstream's reflog shows no forced update, and Corral's branch ends equal to
the upstream's."""

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection

from agents.jobs import upstream
from agents.jobs.runner import run_session
from agents.models import Agent
from agents.moves import lifecycle
from beads.models import Bead
from tests.agents.test_upstream import Person, forced_updates, upstream_beads
from tests.factories import git, run_lead
from workspace import gitops
from workspace.models import Repository

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
AGENTS, ROUNDS, PERSON_COMMITS = 4, 3, 8


def person_pushes(person, count, stop, pushed):
    rng = random.Random(22)
    for n in range(count):
        if stop.is_set():
            return
        time.sleep(rng.uniform(0.2, 1.2))
        for _ in range(5):  # a person whose push is refused pulls and pushes again
            try:
                person.commit(f"person-{n}.txt", f"person {n}\n")
                pushed.append(f"person: person-{n}.txt")
                break
            except Exception:
                git(person.path, "reset", "-q", "--hard", "origin/main")


def run_in_thread(session_id):
    def run():
        try:
            run_session(session_id)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_agents_and_a_person_share_the_upstream_and_nothing_is_lost_or_repeated(
    make_source, tmp_path, workspace, rq_redis
):
    source = make_source("team")
    bare = tmp_path / "upstream.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(bare))
    git(bare, "config", "core.logAllRefUpdates", "always")
    person = Person(bare, tmp_path / "person")
    repo = Repository.register(str(bare), workspace, name="team", max_agents=AGENTS)
    agents = [Agent.objects.create(name=f"demo-{i}", preset="demo") for i in range(AGENTS)]
    stop, pushed = threading.Event(), []
    pusher = threading.Thread(target=person_pushes, args=(person, PERSON_COMMITS, stop, pushed))
    pusher.start()
    beads = []
    try:
        for round_ in range(ROUNDS):
            sessions = []
            for i, agent in enumerate(agents):
                name = f"src/bead_{round_}_{i}.py"
                bead = Bead.objects.create(
                    repository=repo,
                    title=f"Bead {round_}.{i}",
                    scope=["src/**"],
                    description=f"```corral write {name}\nVALUE = {round_ * 10 + i}\n```\n",
                )
                session = lifecycle.claim(agent, bead=bead)
                session.queue()
                sessions.append(session)
                beads.append(bead)
            for thread in [run_in_thread(s.pk) for s in sessions]:
                thread.join()
            run_lead(repo)
        for _ in range(3):  # a train the person kept outpacing sent its beads back: again
            sessions = [
                lifecycle.claim(agent, bead=bead)
                for agent, bead in zip(agents, Bead.objects.filter(status="open"), strict=False)
            ]
            for session in sessions:
                session.queue()
            for thread in [run_in_thread(s.pk) for s in sessions]:
                thread.join()
            run_lead(repo)
    finally:
        pusher.join()
        stop.set()
    upstream.follow_upstream(repo.pk)  # what the schedule does within its period
    run_lead(repo)
    for bead in beads:
        bead.refresh_from_db()
    assert [b.status for b in beads] == ["closed"] * len(beads), [b.last_failure for b in beads]
    landed = Counter(upstream_beads(bare))
    assert landed == Counter({b.pk: 1 for b in beads})  # each bead once
    subjects = Counter(git(bare, "log", "--format=%s", "main").splitlines())
    assert len(pushed) == PERSON_COMMITS
    assert all(subjects[subject] == 1 for subject in pushed)  # each person's commit once
    assert git(bare, "rev-list", "--merges", "main") == ""  # linear
    assert forced_updates(bare) == []
    repo.refresh_from_db()
    assert gitops.head_sha(repo.canonical_path, "main") == git(bare, "rev-parse", "main")
    for bead in beads:  # each bead's recorded commit is the one on the upstream
        trailer = git(
            bare, "show", "-s", "--format=%(trailers:key=Bead,valueonly)", bead.commit_sha
        )
        assert trailer.strip() == bead.pk
    assert Path(bare, "logs", "refs", "heads", "main").is_file()

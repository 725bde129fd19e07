"""The lead queue under load and failure: real lead processes, real Redis."""

import os
import re
import signal

import pytest

from agents.models import Agent, Submission
from beads.models import Bead
from tests.factories import git, make_patch, submit
from tests.procs import Running, group_members, wait_until
from tests.races import race
from workspace.models import Repository

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def lead_worker(env, repo, *args):
    return Running(["manage.py", "leadworker", repo.slug, *args], env)


def all_finished(repo, n):
    def done():
        finished = Submission.objects.filter(repository=repo, finished_at__isnull=False)
        return finished.count() >= n

    return done


def trains(repo):
    """[(started, last finished, members)] of the repository's landings: the
    members of a train share the moment it started."""
    rows = Submission.objects.filter(repository=repo).values_list("started_at", "finished_at")
    spans = {}
    for start, end in rows:
        spans.setdefault(start, []).append(end)
    return sorted((start, max(ends), len(ends)) for start, ends in spans.items())


def assert_serialized(repo):
    """No two trains (or submissions) of the repository were ever being landed at the same time."""
    landed = trains(repo)
    for (_, end, _), (start, _, _) in zip(landed, landed[1:], strict=False):
        assert end <= start, "two trains were landed at once"


def assert_one_commit_per_bead(repo, beads, base):
    path = repo.canonical_path
    shas = git(path, "rev-list", f"{base}..{repo.branch}").split()
    assert len(shas) == len(beads)
    assert git(path, "rev-list", "--merges", f"{base}..{repo.branch}") == ""  # linear
    git(path, "fsck", "--full", "--strict")
    for bead in beads:
        bead.refresh_from_db()
        assert bead.status == "closed"
        files = git(path, "show", "--format=", "--name-only", bead.commit_sha).split()
        assert files == [f"{bead.scope[0].rstrip('/*')}/done.txt"]
        assert f"Bead: {bead.id}" in git(path, "log", "-1", "--format=%B", bead.commit_sha)


def produce(repo_id, agent_id, base, patches):
    repo, agent = Repository.objects.get(pk=repo_id), Agent.objects.get(pk=agent_id)
    for folder, patch in patches:
        bead = Bead.objects.create(repository=repo, title=f"Write {folder}", scope=[f"{folder}/**"])
        submit(bead, agent, patch, base)
    return len(patches)


def patches_for(repo, n):
    base = git(repo.canonical_path, "rev-parse", repo.branch)
    made = [(f"b{i}", make_patch(repo, {f"b{i}/done.txt": f"bead {i}\n"})[1]) for i in range(n)]
    return base, made


def test_forty_submissions_from_eight_producers_land_as_forty_commits(
    repo, agent, rq_redis, subprocess_env
):
    base, made = patches_for(repo, 40)
    worker = lead_worker(subprocess_env, repo)
    try:
        produced = race(produce, [(repo.pk, agent.pk, base, made[i::8]) for i in range(8)])
        assert sum(produced) == 40
        wait_until(all_finished(repo, 40), what="40 submissions")
    finally:
        worker.kill_group()
    assert set(Submission.objects.values_list("status", flat=True)) == {"committed"}
    assert_one_commit_per_bead(repo, list(Bead.objects.filter(repository=repo)), base)
    assert_serialized(repo)


def test_two_lead_workers_on_one_queue_still_commit_one_at_a_time(
    repo, agent, rq_redis, subprocess_env
):
    base, made = patches_for(repo, 16)
    produce(repo.pk, agent.pk, base, made)
    workers = [lead_worker(subprocess_env, repo, "--burst") for _ in range(2)]
    try:
        for worker in workers:
            assert worker.wait(120) == 0
    finally:
        for worker in workers:
            worker.kill_group()
    assert Submission.objects.filter(status="committed").count() == 16
    assert_one_commit_per_bead(repo, list(Bead.objects.filter(repository=repo)), base)
    assert_serialized(repo)


def test_a_lead_killed_mid_job_loses_nothing_and_commits_once(
    repo, agent, rq_redis, subprocess_env
):
    repo.check_command = 'python3 -c "import time; time.sleep(2)"'
    repo.save()
    base, made = patches_for(repo, 1)
    produce(repo.pk, agent.pk, base, made)
    sub = Submission.objects.get()
    worker = lead_worker(subprocess_env, repo)
    try:
        wait_until(lambda: sub.gate_results.filter(gate="apply").exists(), what="the check")
        os.kill(worker.proc.pid, signal.SIGKILL)  # holding the lock, in the check
        worker.wait(10)
    finally:
        worker.kill_group()
    sub.refresh_from_db()
    assert sub.status == "checking", sub.reason
    restarted = lead_worker(subprocess_env, repo, "--burst")
    try:
        assert restarted.wait(120) == 0, restarted.output
    finally:
        restarted.kill_group()
    sub.refresh_from_db()
    assert sub.status == "committed"
    assert "queued again" in restarted.output
    trailer = f"Session: {sub.session_id}"
    log = git(repo.canonical_path, "log", "--format=%H", "-F", f"--grep={trailer}", repo.branch)
    assert log.split() == [sub.commit_sha]


def test_the_supervisor_keeps_a_fixed_pool_of_workers_whatever_the_repositories(
    repo, make_repo, rq_redis, subprocess_env
):
    supervisor = Running(
        ["manage.py", "lead", "--interval", "0.3", "--workers", "2"], subprocess_env
    )
    try:
        first = int(supervisor.wait_for(r"started lead worker 1 \(pid (\d+)\)")[1])
        supervisor.wait_for(r"started lead worker 2 \(pid \d+\)", timeout=10)
        for n in range(5):
            make_repo(f"more{n}")
        os.kill(first, signal.SIGKILL)
        supervisor.wait_for(r"lead worker 1 exited with code -9", timeout=10)
        again = supervisor.wait_for(r"started lead worker 1 \(pid (\d+)\)", timeout=10, start=2)
        assert int(again[1]) != first
        assert len(re.findall(r"^started lead worker", supervisor.output, re.M)) == 3
        os.killpg(supervisor.proc.pid, signal.SIGTERM)
        assert supervisor.wait(30) == 0
    finally:
        supervisor.kill_group()
        pids = [int(p) for p in re.findall(r"\(pid (\d+)\)", supervisor.output)]
        left = [pid for pid in pids if group_members(pid)]
        for pid in left:
            os.killpg(pid, signal.SIGKILL)
    assert pids and not left
    assert "stopped lead worker 1" in supervisor.output
    assert "stopped lead worker 2" in supervisor.output


def spans(repo):
    return list(Submission.objects.filter(repository=repo).values_list("started_at", "finished_at"))


def test_two_lead_workers_land_two_repositories_in_parallel_and_each_one_at_a_time(
    repo, make_repo, agent, rq_redis, subprocess_env
):
    other = make_repo("other")
    repos = [repo, other]
    bases = {}
    for r in repos:
        r.check_command = 'python3 -c "import time; time.sleep(1)"'
        r.save()
        bases[r.pk], made = patches_for(r, 3)
        produce(r.pk, agent.pk, bases[r.pk], made)
    supervisor = Running(["manage.py", "lead", "--workers", "2"], subprocess_env)
    try:
        wait_until(lambda: all(all_finished(r, 3)() for r in repos), what="6 submissions")
        os.killpg(supervisor.proc.pid, signal.SIGTERM)
        assert supervisor.wait(30) == 0
    finally:
        supervisor.kill_group()
    for r in repos:
        assert set(Submission.objects.filter(repository=r).values_list("status", flat=True)) == {
            "committed"
        }
        assert_one_commit_per_bead(r, list(Bead.objects.filter(repository=r)), bases[r.pk])
        assert_serialized(r)
    overlapping = [(a, b) for a in spans(repo) for b in spans(other) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, "the two repositories never landed at the same time"

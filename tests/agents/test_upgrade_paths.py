"""Upgrades keep working after agents/ was split into packages: jobs waiting
in Redis under their old paths still run, and agents whose command names the
demo agent's old module run it from its new home."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rq.utils import import_attribute

from agents import queues
from agents.models import Agent
from beads.models import Bead
from tests.factories import make_patch, run_lead, submit

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_drain_enqueued_under_its_old_path_lands_the_submission(repo, agent, rq_redis):
    bead = Bead.objects.create(repository=repo, title="Add x", scope=["src/**"])
    base, patch = make_patch(repo, {"src/x.py": "x = 1\n"})
    sub = submit(bead, agent, patch, base)
    rq_redis.flushdb()  # the drain the hand-in queued is gone: only the old one waits
    queues.lead_queue(repo).enqueue("agents.lead.drain", repo.pk)
    with pytest.raises((ImportError, AttributeError, ValueError)):
        import_attribute("agents.lead.drain")  # no module is left at the old path

    run_lead(repo)

    sub.refresh_from_db()
    assert sub.status == "committed"


def test_every_old_job_path_names_a_function_that_exists():
    for old, new in queues.MOVED_FUNCTIONS.items():
        assert callable(import_attribute(new)), old


def test_an_agent_running_the_demo_agent_by_its_old_module_runs_it_from_the_client():
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph  # by name: migrations are renumbered at merges
    (node,) = [n for n in graph.nodes if n[0] == "agents" and n[1].endswith("_demo_agent_moved")]
    (parent,) = graph.node_map[node].parents
    executor.migrate([parent.key])
    OldAgent = executor.loader.project_state([parent.key]).apps.get_model("agents", "Agent")
    OldAgent.objects.create(
        name="old-demo", command=["{python}", "-m", "agents.demo_agent"], token_hash="a"
    )
    OldAgent.objects.create(name="other", command=["aider", "--agents.demo_agent"], token_hash="b")
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # all of them, for the next tests

    assert Agent.objects.get(name="old-demo").command == [
        "{python}",
        "-m",
        "corral_client.demo_agent",
    ]
    assert Agent.objects.get(name="other").command == ["aider", "--agents.demo_agent"]

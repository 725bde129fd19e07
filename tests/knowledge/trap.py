"""The trap both the trap test and the browser test walk: two repositories whose
check wants a licence line heading every module, and an agent that writes it
only when its context pack says so."""

from pathlib import Path

from agents.jobs.runner import run_session
from agents.moves import lifecycle
from beads.models import Bead
from tests.factories import program_agent, run_lead
from workspace.models import Repository

CHECK = (Path(__file__).parent / "data" / "trap" / "check_header.py").read_text()


def trapped_repos(make_source, workspace):
    """Two repositories with the licence check: where the lesson is learned, and another."""
    repos = []
    for name in ("billing", "shipping"):
        source = make_source(name, commits=[{"README.md": f"# {name}\n", "check_header.py": CHECK}])
        repo = Repository.register(str(source), workspace)
        repo.check_command = "python3 check_header.py"
        repo.save()
        repos.append(repo)
    return repos


def work(repo, title, path, content="VALUE = 1"):
    """An agent's session on a new bead, then the lead; the bead and its session."""
    bead = Bead.objects.create(repository=repo, title=title, scope=["src/**"])
    session = lifecycle.claim(program_agent("header_aware", f"{path}={content}"), bead=bead)
    session.queue()
    run_session(session.pk)
    run_lead(repo)
    bead.refresh_from_db()
    session.refresh_from_db()
    return bead, session

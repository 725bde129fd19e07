"""`manage.py knowledge import` reads only what lies in the folder it is given:
no symlink is followed (to a file or a folder), nothing outside is read, each
entry skipped is one line on stderr, and what it imports are candidates unless
an admin approves them with --approve, which the audit records."""

import io
import os
import shutil
import threading
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from agents.jobs.runner import read_learnings
from knowledge import agentops
from knowledge.models import Learning
from workspace.audit import Action, AuditEntry

pytestmark = pytest.mark.django_db

FILES = Path(__file__).parent / "data" / "agentops"
SECRET = "SECRET-KEY-0123456789abcdef"


def import_(*args):
    """Run the import; (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command("knowledge", "import", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def secret(tmp_path):
    """A host file an import must never read, like CORRAL_HOME/secret_key."""
    path = tmp_path / "home" / "secret_key"
    path.parent.mkdir()
    path.write_text(f"# {SECRET}\n{SECRET}\n")
    return path


@pytest.fixture
def folder(tmp_path):
    """A learnings folder with one good learning in it."""
    path = tmp_path / "learnings"
    path.mkdir()
    (path / "good.md").write_text("# Pin the toolchain\n\nUse 1.2.\n")
    return path


def nothing_secret_was_imported():
    every = Learning.objects.values_list("title", "body")
    return not any(SECRET in title or SECRET in body for title, body in every)


def test_a_file_symlink_out_of_the_folder_is_skipped_and_reported(folder, secret):
    (folder / "leak.md").symlink_to(secret)
    out, err = import_(folder)
    assert nothing_secret_was_imported()
    assert Learning.objects.get().title == "Pin the toolchain"
    assert err.splitlines() == [f"{folder / 'leak.md'}: skipped, a symlink (never followed)"]
    assert "Imported 1 new" in out


def test_a_symlinked_folder_inside_is_not_entered(folder, secret):
    (folder / "more").symlink_to(secret.parent, target_is_directory=True)
    (secret.parent / "also.md").write_text(f"# {SECRET}\n")
    _, err = import_(folder)
    assert nothing_secret_was_imported()
    assert err.splitlines() == [f"{folder / 'more'}: skipped, a symlink (never followed)"]


def test_a_symlink_in_a_subfolder_is_skipped_too(folder, secret):
    (folder / "sub").mkdir()
    (folder / "sub" / "ok.md").write_text("# Keep migrations small\n\nOne change each.\n")
    (folder / "sub" / "leak.md").symlink_to(secret)
    _, err = import_(folder)
    assert nothing_secret_was_imported()
    assert set(Learning.objects.values_list("title", flat=True)) == {
        "Pin the toolchain",
        "Keep migrations small",
    }
    assert err.splitlines() == [
        f"{folder / 'sub' / 'leak.md'}: skipped, a symlink (never followed)"
    ]


def test_a_hard_link_to_a_file_outside_is_skipped(folder, secret):
    os.link(secret, folder / "linked.md")
    _, err = import_(folder)
    assert nothing_secret_was_imported()
    assert "linked.md: skipped, a file with other hard links" in err


def test_a_fifo_is_skipped_without_hanging(folder):
    pipe = folder / "pipe.md"
    os.mkfifo(pipe)
    found = {}
    reader = threading.Thread(target=lambda: found.update(read=agentops.read_all(folder)))
    reader.start()
    reader.join(timeout=20)
    hung = reader.is_alive()
    if hung:  # a writer that comes and goes ends the read, so the test ends
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    assert not hung, "reading the folder blocked on a FIFO"
    parts, broken, skipped = found["read"]
    assert [p.title for p in parts] == ["Pin the toolchain"] and not broken
    assert skipped == [f"{pipe}: skipped, not a regular file"]


def test_the_folder_or_file_given_as_a_symlink_is_refused(tmp_path, folder, secret):
    linked = tmp_path / "linked-folder"
    linked.symlink_to(folder, target_is_directory=True)
    with pytest.raises(CommandError, match="linked-folder: a symlink"):
        import_(linked)
    linked_file = tmp_path / "linked.md"
    linked_file.symlink_to(secret)
    with pytest.raises(CommandError, match="linked.md: a symlink"):
        import_(linked_file)
    assert not Learning.objects.exists()


def test_imported_learnings_arrive_as_candidates(repo):
    out, _ = import_(FILES, "--repo", repo.slug)
    assert set(Learning.objects.values_list("status", flat=True)) == {"candidate"}
    assert "as candidates" in out
    assert not AuditEntry.objects.exists()


def test_an_import_approved_with_approve_is_audited(repo):
    out, _ = import_(FILES, "--repo", repo.slug, "--approve")
    assert set(Learning.objects.values_list("status", flat=True)) == {"approved"}
    entry = AuditEntry.objects.get()
    assert entry.action == Action.LEARNINGS_IMPORT and entry.repository == repo
    assert entry.actor_name and f"5 learning(s) from {FILES}" == entry.target
    ids = sorted(Learning.objects.values_list("pk", flat=True))
    assert entry.detail.endswith(", ".join(f"#{pk}" for pk in ids))
    assert "approved" in out


def test_an_import_that_changes_an_approved_learning_makes_it_a_candidate_again(tmp_path, repo):
    folder = tmp_path / "in"
    shutil.copytree(FILES, folder)
    import_(folder, "--repo", repo.slug, "--approve")
    drift = folder / "2026-02-16-session-retro.md"
    drift.write_text(drift.read_text().replace("Hardcoded Counts Drift", "Trust Me Instead"))
    import_(folder, "--repo", repo.slug)
    assert Learning.objects.get(title="Trust Me Instead").status == "candidate"
    unchanged = Learning.objects.get(title="Scope Validators to the Files a Change Touches")
    assert unchanged.status == "approved"


def test_a_retired_learning_stays_retired_when_imported_again(repo):
    import_(FILES, "--repo", repo.slug, "--approve")
    drift = Learning.objects.get(title="Hardcoded Counts Drift")
    assert drift.retire("misleading")
    import_(FILES, "--repo", repo.slug, "--approve")
    drift.refresh_from_db()
    assert drift.status == "retired"


def test_a_sessions_learnings_folder_is_read_without_following_a_file_symlink(tmp_path, secret):
    """The runner reads an agent's .agents/learnings from its clone the same way."""
    learnings = tmp_path / "clone" / ".agents" / "learnings"
    learnings.mkdir(parents=True)
    (learnings / "leak.md").symlink_to(secret)
    (learnings / "tip.md").write_text("# A real tip\n\nIt helps.\n")
    os.mkfifo(learnings / "pipe.md")
    assert read_learnings(tmp_path / "clone") == [{"title": "A real tip", "body": "It helps."}]

"""Captured learnings waiting for approval, with their source, for the review
queue: knowledge.curate.waiting_candidates and templates/knowledge/_waiting.html."""

import pytest
from django.template.loader import render_to_string

from knowledge.curate import waiting_candidates
from knowledge.models import Learning
from workspace.models import Workspace

pytestmark = pytest.mark.django_db


def candidate(workspace, repo, title, sources, occurrences=1, **fields):
    return Learning.objects.create(
        workspace=workspace,
        repository=repo,
        title=title,
        body="b",
        sources=sources,
        occurrences=occurrences,
        **fields,
    )


def test_candidates_wait_most_seen_first_with_where_they_came_from(repo, workspace):
    gate = candidate(
        workspace, repo, "check gate: jobs name their owner",
        [{"kind": "refusal", "gate": "check", "bead": "app-1"}], occurrences=3,
    )  # fmt: skip
    review = candidate(
        workspace, repo, "Review: no print in jobs",
        [{"kind": "rejection", "reviewer": "alice", "bead": "app-2"}],
    )  # fmt: skip
    imported = candidate(workspace, None, "Pin ruff", [{"kind": "agentops", "file": "a.md"}])
    candidate(workspace, repo, "Approved already", [], status="approved")
    candidate(Workspace.objects.create(name="Else", slug="else"), None, "Elsewhere", [])
    shown, total = waiting_candidates(workspace)
    assert shown[0] == gate and set(shown) == {gate, review, imported} and total == 3
    assert gate.source_label() == "check gate's refusal of app-1"
    assert review.source_label() == "alice's rejection of app-2"
    assert imported.source_label() == "agentops file a.md"
    assert waiting_candidates(workspace, limit=1) == ([gate], 3)


def test_the_partial_lists_them_with_their_source_and_a_link(repo, workspace):
    gate = candidate(
        workspace, repo, "check gate: jobs name their owner",
        [{"kind": "refusal", "gate": "check", "bead": "app-1"}],
    )  # fmt: skip
    waiting, total = waiting_candidates(workspace)
    html = render_to_string("knowledge/_waiting.html", {"waiting": waiting, "waiting_total": total})
    row = html.split(f'data-learning="{gate.pk}"')[1].split("</tr>")[0]
    assert f'href="{gate.get_absolute_url()}"' in row
    assert "check gate&#x27;s refusal of app-1" in row and "app" in row
    empty = render_to_string("knowledge/_waiting.html", {"waiting": [], "waiting_total": 0})
    assert "None waiting." in empty

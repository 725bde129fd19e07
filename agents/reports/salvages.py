"""A bead's salvages, for its page: what each session that ended without
handing in left, its size and why it stopped, and its diff. The row holds
the size; the diff is read from git, by this page alone."""

from dataclasses import dataclass

from agents.models import Salvage
from beads.models import Bead
from workspace import gitops

SHOWN = 20  # the newest salvages a bead's page lists


@dataclass
class ShownSalvage:
    salvage: Salvage
    diff: str  # "" when nothing was kept, or its commit is gone
    gone: bool = False  # kept, but its ref is no longer in the repository


def for_bead(bead: Bead) -> list[ShownSalvage]:
    rows = bead.salvages.select_related("session__agent").order_by("-created_at", "-pk")
    path = bead.repository.canonical_path
    shown = []
    for salvage in rows[:SHOWN]:
        diff, gone = "", False
        if salvage.sha:
            try:
                diff = gitops.salvage_diff(path, salvage.sha)
            except gitops.GitError:
                gone = True
        shown.append(ShownSalvage(salvage, diff, gone))
    return shown

"""Plans as people edit them: waves as lists of bead ids, changed on data and
saved whole, only over the version the person saw.

Every edit carries the plan's version: the write is a conditional UPDATE of
that version (draft plans only), so of two people editing at once the second
is told "the plan changed" and shown the new version, never silently undone.
"""

from collections.abc import Sequence

from django.db import transaction
from django.db.models import F, QuerySet

from beads import planner
from beads.models import Bead, Plan, Wave, WaveBead
from workspace.models import Workspace

Waves = list[list[str]]


class PlanChanged(Exception):
    """The plan is no longer the version the edit was made on (or not a draft)."""


def waves_of(plan: Plan) -> Waves:
    """The plan's waves in order, each its bead ids in the order they were placed."""
    rows = WaveBead.objects.filter(plan=plan).order_by("wave__number", "pk")
    waves: dict[int, list[str]] = {}
    for number, bead_id in rows.values_list("wave__number", "bead_id"):
        waves.setdefault(number, []).append(bead_id)
    return [waves[n] for n in sorted(waves)]


def save_waves(plan: Plan, waves: Sequence[Sequence[str]], version: int, **fields: object) -> None:
    """Replace the plan's waves (empty ones dropped, numbered from 1) and set
    `fields`, if the plan is still the draft at `version`; else PlanChanged."""
    with transaction.atomic():
        won = Plan.objects.filter(pk=plan.pk, version=version, status=Plan.Status.DRAFT).update(
            version=F("version") + 1, **fields
        )
        if not won:
            raise PlanChanged("The plan changed since you loaded it: here is the new version.")
        Wave.objects.filter(plan=plan).delete()
        kept = [list(wave) for wave in waves if wave]
        made = Wave.objects.bulk_create(
            [Wave(plan=plan, number=n) for n in range(1, len(kept) + 1)]
        )
        WaveBead.objects.bulk_create(
            [
                WaveBead(plan=plan, wave=wave, bead_id=bead_id)
                for wave, ids in zip(made, kept, strict=True)
                for bead_id in ids
            ]
        )
    plan.refresh_from_db()


def start(workspace: Workspace, name: str, beads: Sequence[Bead], cap: int) -> Plan:
    """A draft plan over `beads` with the planner's proposal as its waves."""
    return start_with(workspace, name, planner.propose_for(beads, cap).waves, cap)


def start_with(workspace: Workspace, name: str, waves: Sequence[Sequence[str]], cap: int) -> Plan:
    """A draft plan with these waves (bead ids, each in one wave), as given."""
    with transaction.atomic():
        plan = Plan.objects.create(workspace=workspace, name=name, max_agents_per_wave=cap)
        save_waves(plan, waves, plan.version)
    return plan


def repropose(plan: Plan, version: int) -> None:
    """The planner's proposal again, over the plan's beads (after edits to them)."""
    beads = Bead.objects.filter(pk__in=[b for wave in waves_of(plan) for b in wave])
    save_waves(plan, planner.propose_for(list(beads), plan.max_agents_per_wave).waves, version)


# Edits on data: each takes waves and returns new ones.


def moved(waves: Waves, bead_id: str, to: int) -> Waves:
    """`bead_id` into wave index `to` (len(waves): a new wave at the end)."""
    result = [[b for b in wave if b != bead_id] for wave in waves]
    while len(result) <= to:
        result.append([])
    result[to].append(bead_id)
    return [wave for wave in result if wave]


def split(waves: Waves, index: int) -> Waves:
    """Wave `index` into two: its second half becomes the wave right after it."""
    wave = waves[index]
    if len(wave) < 2:
        return waves
    half = (len(wave) + 1) // 2
    return [*waves[:index], wave[:half], wave[half:], *waves[index + 1 :]]


def merged(waves: Waves, index: int) -> Waves:
    """Wave `index` and the one after it, as one."""
    if index + 1 >= len(waves):
        return waves
    return [*waves[:index], waves[index] + waves[index + 1], *waves[index + 2 :]]


def plan_beads(plan: Plan) -> QuerySet[Bead]:
    return Bead.objects.filter(pk__in=WaveBead.objects.filter(plan=plan).values("bead"))

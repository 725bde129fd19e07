"""Blocking dependencies may cross repositories but never form a cycle."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from beads.models import Bead, Dependency, DependencyCycle
from tests.races import race


@pytest.fixture
def beads(make_repo):
    api, web = make_repo("api"), make_repo("web")
    return {
        "a": Bead.objects.create(repository=api, title="a"),
        "b": Bead.objects.create(repository=web, title="b"),
        "c": Bead.objects.create(repository=api, title="c"),
    }


def blocks(issue, depends_on):
    return Dependency.objects.create(issue=issue, depends_on=depends_on)


def test_a_two_bead_cycle_is_refused(beads):
    blocks(beads["a"], beads["b"])
    with pytest.raises(DependencyCycle, match="cycle"):
        blocks(beads["b"], beads["a"])
    assert Dependency.objects.count() == 1


def test_a_cycle_across_repositories_names_its_chain(beads):
    a, b, c = beads["a"], beads["b"], beads["c"]
    blocks(a, b)
    blocks(b, c)
    with pytest.raises(DependencyCycle) as raised:
        blocks(c, a)
    assert f"{c.id} → {a.id} → {b.id} → {c.id}" in raised.value.messages[0]


def test_non_blocking_links_may_point_back(beads):
    blocks(beads["a"], beads["b"])
    Dependency.objects.create(issue=beads["b"], depends_on=beads["a"], type="related")
    assert Dependency.objects.count() == 2


def test_a_bead_cannot_depend_on_itself(beads):
    with pytest.raises(ValidationError):
        blocks(beads["a"], beads["a"])


def test_one_link_per_pair(beads):
    blocks(beads["a"], beads["b"])
    with pytest.raises(IntegrityError):
        Dependency.objects.create(issue=beads["a"], depends_on=beads["b"], type="related")


def test_blockers_lists_what_a_bead_waits_for(beads):
    blocks(beads["a"], beads["b"])
    Dependency.objects.create(issue=beads["a"], depends_on=beads["c"], type="related")
    assert list(beads["a"].blockers()) == [beads["b"]]


def add_blocks(issue_id, depends_on_id):
    try:
        Dependency.objects.create(issue_id=issue_id, depends_on_id=depends_on_id)
        return True
    except DependencyCycle:
        return "cycle"
    except IntegrityError:
        return "duplicate"


@pytest.mark.django_db(transaction=True)
def test_two_halves_of_a_cycle_added_at_once_only_one_lands(beads):
    a, b = beads["a"].id, beads["b"].id
    results = race(add_blocks, [(a, b), (b, a)] * 3)
    pairs = set(Dependency.objects.values_list("issue_id", "depends_on_id"))
    assert len(pairs) == 1
    assert results.count(True) == 1
    assert results.count("cycle") == 3  # every attempt at the reverse link was refused

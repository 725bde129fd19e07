"""Bead IDs: `<prefix>-<base36>`, short while few, collision-free under concurrency."""

import re

import pytest

from beads import ids
from beads.models import Bead
from tests.races import race


def test_hash_length_grows_with_the_bead_count():
    assert ids.hash_length(0) == 4
    assert ids.hash_length(499) == 4
    assert ids.hash_length(600) == 5
    assert ids.hash_length(2_900) == 5
    assert ids.hash_length(4_000) == 6
    assert ids.hash_length(17_000) == 6
    assert ids.hash_length(20_000) == 7


def test_a_new_bead_gets_a_short_lowercase_id_with_its_prefix(repo):
    bead = Bead.objects.create(repository=repo, title="First")
    assert re.fullmatch(rf"{repo.bead_prefix}-[0-9a-z]{{4}}", bead.id)


def test_an_id_clash_is_retried_with_a_fresh_candidate(repo, monkeypatch):
    taken = Bead.objects.create(repository=repo, title="Taken")
    fresh = f"{repo.bead_prefix}-zzzz"
    monkeypatch.setattr(ids, "candidates", lambda *a: iter([taken.id, taken.id, fresh]))
    bead = Bead.objects.create(repository=repo, title="Second")
    assert bead.id == fresh
    assert Bead.objects.get(pk=taken.id).title == "Taken"


def create_beads(repo_id, n):
    from workspace.models import Repository

    repo = Repository.objects.get(pk=repo_id)
    return [Bead.objects.create(repository=repo, title=f"bead {i}").id for i in range(n)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_eight_processes_creating_beads_at_once_get_distinct_ids(repo):
    made = race(create_beads, [(repo.pk, 40)] * 8)
    all_ids = [bead_id for batch in made for bead_id in batch]
    assert len(all_ids) == 320
    assert len(set(all_ids)) == 320
    assert Bead.objects.filter(repository=repo).count() == 320

"""The wave planner's rules, over real repositories: blocks order, no shared
file in a wave (by file at head, by pattern for files not there yet), the cap
per wave, the shared-files report with hot files, and the two fixes."""

import pytest

from beads import planner
from beads.models import Bead, Dependency
from workspace.models import Repository

FILES = [
    {"README.md": "# shop\n", "config/settings.py": "A = 1\n"},
    {"src/cart.py": "cart\n", "src/pay.py": "pay\n", "config/settings.py": "A = 2\n"},
    {"src/ship.py": "ship\n", "config/settings.py": "A = 3\n", "docs/guide.md": "guide\n"},
]


@pytest.fixture
def shop(make_source, workspace):
    return Repository.register(str(make_source("shop", commits=FILES)), workspace)


def bead(repo, title, scope, priority=2, issue_type="task"):
    return Bead.objects.create(
        repository=repo, title=title, scope=scope, priority=priority, issue_type=issue_type
    )


def blocks(issue, depends_on):
    Dependency.objects.create(issue=issue, depends_on=depends_on)


def waves_of(proposal, *beads):
    wave_of = proposal.wave_of()
    return [wave_of[b.id] for b in beads]


def test_blocks_dependencies_put_a_bead_after_what_it_waits_for(shop):
    first = bead(shop, "first", ["src/cart.py"])
    second = bead(shop, "second", ["src/pay.py"], priority=0)
    third = bead(shop, "third", ["src/ship.py"])
    blocks(second, first)
    blocks(third, second)
    proposal = planner.propose_for([third, second, first])
    assert waves_of(proposal, first, second, third) == [0, 1, 2]


def test_beads_with_disjoint_scopes_share_a_wave(shop):
    a, b = bead(shop, "a", ["src/cart.py"]), bead(shop, "b", ["docs/**"])
    proposal = planner.propose_for([a, b])
    assert proposal.waves == [[a.id, b.id]]
    assert proposal.shared == []


def test_a_glob_expanded_at_head_separates_beads_touching_one_file(shop):
    broad = bead(shop, "broad", ["src/**"])
    narrow = bead(shop, "narrow", ["src/pay.py"])
    proposal = planner.propose_for([broad, narrow])
    assert waves_of(proposal, broad, narrow) == [0, 1]
    assert [(s.path, s.beads) for s in proposal.shared] == [
        ("src/pay.py", sorted([broad.id, narrow.id]))
    ]


def test_a_negation_takes_a_file_out_of_a_scope(shop):
    broad = bead(shop, "broad", ["src/**", "!src/pay.py"])
    narrow = bead(shop, "narrow", ["src/pay.py"])
    proposal = planner.propose_for([broad, narrow])
    assert proposal.waves == [[broad.id, narrow.id]]


def test_a_file_not_there_yet_is_compared_as_a_pattern(shop):
    creates = bead(shop, "creates", ["src/refund.py"])  # matches nothing at head
    widens = bead(shop, "widens", ["src/*.py"])
    elsewhere = bead(shop, "elsewhere", ["lib/new/**"])  # nothing either, and disjoint
    proposal = planner.propose_for([creates, widens, elsewhere])
    assert waves_of(proposal, creates, widens, elsewhere) == [0, 1, 0]
    assert [s.path for s in proposal.shared] == ["src/refund.py"]


def test_two_new_directories_compared_as_patterns_clash_when_one_holds_the_other(shop):
    outer = bead(shop, "outer", ["pkg/**"])
    inner = bead(shop, "inner", ["pkg/sub/**"])
    proposal = planner.propose_for([outer, inner])
    assert waves_of(proposal, outer, inner) == [0, 1]
    assert proposal.shared[0].is_pattern


def test_an_empty_scope_touches_any_path_of_its_repository(shop, make_repo):
    other = make_repo("other")
    anything = bead(shop, "anything", [])
    here = bead(shop, "here", ["docs/guide.md"])
    there = bead(other, "there", ["src/app.py"])
    proposal = planner.propose_for([anything, here, there])
    assert waves_of(proposal, anything, here, there) == [0, 1, 0]


def test_the_same_path_in_two_repositories_is_not_shared(make_repo):
    api, web = make_repo("api"), make_repo("web")
    a, b = bead(api, "a", ["src/app.py"]), bead(web, "b", ["src/app.py"])
    assert planner.propose_for([a, b]).waves == [[a.id, b.id]]


def test_a_wave_holds_at_most_the_agents_per_wave(shop):
    beads = [bead(shop, f"doc {n}", [f"docs/page{n}.md"]) for n in range(7)]
    proposal = planner.propose_for(beads, cap=3)
    assert [len(w) for w in proposal.waves] == [3, 3, 1]
    assert planner.propose_for(beads).waves[0] == [b.id for b in beads[:4]]


def test_higher_priority_goes_first_within_a_layer(shop):
    low = bead(shop, "low", ["config/settings.py"], priority=3)
    high = bead(shop, "high", ["config/settings.py"], priority=0)
    assert planner.propose_for([low, high]).waves == [[high.id], [low.id]]


def test_epics_are_left_out_their_children_carry_the_work(shop):
    epic = bead(shop, "epic", [], issue_type="epic")
    child = bead(shop, "child", ["src/cart.py"])
    assert planner.propose_for([epic, child]).waves == [[child.id]]


def test_blockers_outside_the_selection_do_not_order_it(shop):
    outside = bead(shop, "outside", ["docs/**"])
    inside = bead(shop, "inside", ["src/cart.py"])
    blocks(inside, outside)
    assert planner.propose_for([inside]).waves == [[inside.id]]


def test_the_shared_files_report_names_hot_files_and_offers_both_fixes(shop):
    beads = [bead(shop, f"setting {n}", ["config/settings.py", f"src/n{n}.py"]) for n in range(3)]
    proposal = planner.propose_for(beads)
    assert len(proposal.waves) == 3
    (shared,) = proposal.shared
    assert (shared.repo, shared.path, shared.hot) == ("shop", "config/settings.py", 3)
    assert shared.beads == sorted(b.id for b in beads)
    serialize, prepare = shared.fixes()
    assert serialize.startswith("Serialize") and "earlier wave" in prepare
    assert proposal.hot["shop"] == [("config/settings.py", 3)]


def test_clashes_and_order_are_checked_in_edited_waves(shop):
    a = bead(shop, "a", ["config/settings.py"])
    b = bead(shop, "b", ["config/**"])
    c = bead(shop, "c", ["docs/guide.md"])
    blocks(c, a)
    items = planner.items_for([a, b, c])
    proposal = planner.propose_for([a, b, c])
    edited = [[a.id, b.id, c.id]]
    assert planner.clashes(edited, proposal.pairs) == [
        (0, a.id, b.id, ["config/settings.py"])
    ] or planner.clashes(edited, proposal.pairs) == [(0, b.id, a.id, ["config/settings.py"])]
    assert planner.out_of_order(edited, items) == [(c.id, a.id)]
    assert planner.clashes(proposal.waves, proposal.pairs) == []
    assert planner.out_of_order(proposal.waves, items) == []


def test_serialize_spreads_the_beads_over_successive_waves():
    waves = [["a", "b", "x"], ["c"]]
    assert planner.serialize(waves, ["b", "a", "c"]) == [["a", "x"], ["b"], ["c"]]
    assert planner.serialize([["a", "b"]], ["a", "b"]) == [["a"], ["b"]]


def test_a_repository_without_commits_has_an_empty_tree(shop):
    assert planner.Tree([]).files == []
    tree = planner.trees_for([shop])["shop"]
    assert "config/settings.py" in tree.files and "src/pay.py" in tree.files

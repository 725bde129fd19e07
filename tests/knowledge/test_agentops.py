"""agentops .agents/learnings files in and out, losslessly, all or nothing."""

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from knowledge.models import Learning

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
FILES = DATA / "agentops"


def import_(*args):
    call_command("knowledge", "import", *map(str, args))


def export(out, *args):
    call_command("knowledge", "export", "--output", str(out), *args)
    return {p.name: p.read_text() for p in out.iterdir()}


def test_files_that_go_in_and_come_out_unchanged_are_the_same_bytes(repo, tmp_path):
    import_(FILES, "--repo", repo.slug)
    assert Learning.objects.count() == 5  # 1 + 3 (one body holds a rule) + 1
    written = export(tmp_path / "out", "--repo", repo.slug)
    assert written == {p.name: p.read_text() for p in FILES.iterdir()}


def test_the_keys_corral_understands_are_mapped(repo):
    import_(FILES, "--repo", repo.slug)
    scope = Learning.objects.get(title="Scope Validators to the Files a Change Touches")
    assert scope.status == "candidate" and scope.repository == repo  # until approved
    assert scope.maturity == "candidate" and scope.utility == pytest.approx(0.7)  # provisional
    assert scope.confirmed_at.date().isoformat() == "2026-05-01" and "testing" in scope.tags
    drift = Learning.objects.get(title="Hardcoded Counts Drift")
    assert drift.utility == pytest.approx(0.405) and drift.tags == ["ci", "docs", "process"]
    assert drift.confirmed_at.isoformat() == "2026-02-20T17:03:41+00:00"  # last_reward_at
    second = Learning.objects.get(title="Check Existing Scripts Before Writing New Ones")
    assert second.tags == ["tooling"] and second.agentops["inline_fields"][0] == ["ID", "L2"]
    third = Learning.objects.get(title="A Rule Inside a Body Is Not a Separator")
    assert "Below the rule, still the same learning." in third.body
    hydra = Learning.objects.get(title="Scenario tests need their marker")
    assert hydra.agentops["key"] == "1403"


def test_a_change_corral_made_is_written_back_and_every_other_key_kept(repo, tmp_path):
    import_(FILES, "--repo", repo.slug)
    drift = Learning.objects.get(title="Hardcoded Counts Drift")
    Learning.objects.filter(pk=drift.pk).update(utility=0.5, title="Hardcoded Counts Always Drift")
    written = export(tmp_path / "out")["2026-02-16-session-retro.md"]
    head = yaml.load(written.split("---\n")[1], Loader=yaml.BaseLoader)
    original = yaml.load(
        (FILES / "2026-02-16-session-retro.md").read_text().split("---\n")[1],
        Loader=yaml.BaseLoader,
    )
    assert list(head) == list(original)
    assert head == {**original, "utility": "0.5000"}
    assert "created_at: 2026-02-16\n" in written and "last_reward: 0.00\n" in written
    assert "# Learning: Hardcoded Counts Always Drift\n" in written
    assert "**ID**: L2\n**Category**: tooling\n" in written


def test_importing_again_updates_instead_of_duplicating(repo):
    import_(FILES, "--repo", repo.slug)
    import_(FILES, "--repo", repo.slug)
    assert Learning.objects.count() == 5


def test_corrals_own_learnings_export_as_agentops_files_and_come_back(repo, tmp_path):
    own = Learning.objects.create(
        workspace=repo.workspace, repository=repo, title="Pin the toolchain", body="Use 1.2.\n"
    )
    written = export(tmp_path / "out")
    (name,) = written
    text = written[name]
    assert text.startswith(f"---\nid: corral-{own.pk}\ntype: learning\n")
    assert "\n# Learning: Pin the toolchain\n\nUse 1.2.\n" in text
    import_(tmp_path / "out" / name, "--repo", repo.slug)
    assert Learning.objects.count() == 1


def test_a_broken_file_is_named_with_its_line_and_nothing_is_imported(repo, tmp_path):
    with pytest.raises(CommandError) as raised:
        import_(DATA / "agentops-broken", "--repo", repo.slug)
    message = str(raised.value)
    assert "\n" not in message and "2 broken file(s), nothing imported" in message
    assert "broken.md:5: front matter" in message
    assert "unclosed.md:1: the front matter opened with --- is never closed" in message
    assert not Learning.objects.exists()


def test_bad_arguments_are_one_line_errors(repo, tmp_path):
    with pytest.raises(CommandError, match="no such file or folder"):
        import_(tmp_path / "nothing-here")
    with pytest.raises(CommandError, match="no repository 'nope'"):
        import_(FILES, "--repo", "nope")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CommandError, match="not a folder"):
        export(tmp_path / "a-file")


def test_a_file_that_is_not_utf8_is_reported(tmp_path, repo):
    folder = tmp_path / "in"
    shutil.copytree(FILES, folder)
    (folder / "binary.md").write_bytes(b"---\nid: x\n---\n\xff\xfe")
    with pytest.raises(CommandError, match=r"binary.md:1: not UTF-8"):
        import_(folder)
    assert not Learning.objects.exists()


def test_when_a_learning_last_helped_goes_out_and_comes_back(repo, tmp_path):
    helped = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
    hurt = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    own = Learning.objects.create(
        workspace=repo.workspace,
        repository=repo,
        title="Pin the toolchain",
        body="Use 1.2.\n",
        last_helped_at=helped,
        last_hurt_at=hurt,
    )
    (text,) = export(tmp_path / "out").values()
    assert f"last_helped_at: {helped.isoformat()}\n" in text
    assert f"last_hurt_at: {hurt.isoformat()}\n" in text
    Learning.objects.filter(pk=own.pk).update(last_helped_at=None, last_hurt_at=None)
    import_(tmp_path / "out", "--repo", repo.slug)
    own.refresh_from_db()
    assert (own.last_helped_at, own.last_hurt_at) == (helped, hurt)


def test_agentops_last_reward_is_when_it_helped_and_corrals_own_is_written_back(repo, tmp_path):
    import_(FILES, "--repo", repo.slug)
    drift = Learning.objects.get(title="Hardcoded Counts Drift")
    assert drift.last_helped_at is None  # its last reward was 0.00: it did not help
    folder = tmp_path / "in"
    folder.mkdir()
    rewarded = (FILES / "2026-02-16-session-retro.md").read_text()
    rewarded = rewarded.replace("id: retro-ci-counts-drift", "id: rewarded")
    (folder / "rewarded.md").write_text(rewarded.replace("last_reward: 0.00", "last_reward: 1.00"))
    import_(folder, "--repo", repo.slug)
    paid = Learning.objects.get(agentops__key="rewarded")
    assert paid.last_helped_at.isoformat() == "2026-02-20T17:03:41+00:00"
    assert (
        export(tmp_path / "same", "--repo", repo.slug)["rewarded.md"]
        == (folder / "rewarded.md").read_text()
    )  # nothing changed: the same bytes
    paid.confirm()  # it helped again, in Corral
    paid.refresh_from_db()
    written = export(tmp_path / "out", "--repo", repo.slug)["rewarded.md"]
    head = yaml.load(written.split("---\n")[1], Loader=yaml.BaseLoader)
    assert head["last_helped_at"] == paid.last_helped_at.isoformat()
    assert head["last_reward_at"] == "2026-02-20T12:03:41-05:00"  # agentops' own, kept
    Learning.objects.filter(pk=paid.pk).update(last_helped_at=None)
    import_(tmp_path / "out" / "rewarded.md", "--repo", repo.slug)
    paid.refresh_from_db()
    assert paid.last_helped_at.isoformat() == head["last_helped_at"]

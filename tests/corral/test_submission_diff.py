"""A submission's diff people can read: highlighted, each file folded on its
own, more context on demand from git, unified or side by side, and a
hostile patch shown inert."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.reports import diffs
from tests.factories import land, make_patch, unsafe_markup

MODULE = "".join(f"def f{n}():\n    return {n}\n" for n in range(1, 41))  # 80 lines


@pytest.fixture
def repo(make_repo, make_source):
    return make_repo("shop")


@pytest.fixture
def code_repo(workspace, make_source):
    from workspace.models import Repository

    source = make_source("code", commits=[{"src/mod.py": MODULE, "README.md": "# code\n"}])
    return Repository.register(str(source), workspace)


def changed_module():
    lines = MODULE.splitlines(keepends=True)
    lines[39] = "    return 'twenty'\n"  # line 40: f20's body
    return "".join(lines)


def submission_of(repo, agent, files):
    _, sub = land(repo, agent, files, scope=["**"])
    return sub


def page(client, sub, query=""):
    response = client.get(f"/submissions/{sub.pk}/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_python_lines_are_highlighted_by_pygments_with_classes(logged_in, code_repo, agent):
    sub = submission_of(code_repo, agent, {"src/mod.py": changed_module()})
    html = page(logged_in, sub)
    added = re.search(r'<tr class="add">.*?</tr>', html, re.S).group(0)
    assert '<span class="k">return</span>' in added  # a keyword, by class
    assert '<span class="s1">&#x27;twenty&#x27;</span>' in added or "twenty" in added
    assert 'class="diff highlight unified"' in html
    assert "style=" not in re.search(r'<section id="diff">.*</section>', html, re.S).group(0)


def test_each_file_is_folded_in_its_own_details(logged_in, code_repo, agent):
    files = {"src/mod.py": changed_module(), "src/new.py": "X = 1\n", "README.md": "# changed\n"}
    sub = submission_of(code_repo, agent, files)
    html = page(logged_in, sub)
    summaries = re.findall(
        r'<details class="diff-file" id="file-\d+" open>\s*<summary><code>([^<]+)</code>', html
    )
    assert sorted(summaries) == ["README.md", "src/mod.py", "src/new.py"]
    assert re.search(
        r"<code>src/new.py</code> <span class=\"file-status added\">added</span>", html
    )


def test_more_context_shows_the_base_lines_above_a_hunk(logged_in, code_repo, agent):
    sub = submission_of(code_repo, agent, {"src/mod.py": changed_module()})
    html = page(logged_in, sub)
    button = re.search(r'hx-get="(/submissions/\d+/context\?[^"]+)"', html).group(1)
    assert "file=0&amp;hunk=0&amp;start=17&amp;end=36" in button
    more = logged_in.get(button.replace("&amp;", "&"))
    assert more.status_code == 200
    text = more.content.decode()
    rows = re.findall(
        r'<tr class="ctx more"><td class="ln">(\d+)</td><td class="ln">(\d+)</td>', text
    )
    assert rows[0] == ("17", "17") and rows[-1] == ("36", "36") and len(rows) == 20
    assert '<span class="nf">f9</span>' in text  # line 17 is `def f9():`, highlighted
    assert "start=1&amp;end=16" in text  # the rest of the gap, on demand


def test_more_context_below_the_last_hunk_reads_on_to_the_end(logged_in, code_repo, agent):
    sub = submission_of(code_repo, agent, {"src/mod.py": changed_module()})
    diff = diffs.parse(sub.session.patch)
    start, end = diff.files[0].more_below
    more = logged_in.get(
        f"/submissions/{sub.pk}/context?file=0&hunk=1&start={start}&end={end}"
    ).content.decode()
    numbers = re.findall(r'<tr class="ctx more"><td class="ln">(\d+)</td>', more)
    assert numbers and numbers[-1] == str(min(end, 80))


@pytest.mark.parametrize(
    "query, why",
    [
        ("file=9&hunk=0&start=1&end=5", "no file 9"),
        ("file=0&hunk=0&start=30&end=45", "not hidden context"),  # into the hunk
        ("file=0&hunk=5&start=1&end=5", "no hunk 5"),
        ("file=0&hunk=0&start=1&end=x", "whole number"),
        ("file=0&hunk=0&start=-3&end=2", "not hidden context"),
    ],
)
def test_more_context_for_lines_the_diff_does_not_hide_is_a_400(
    logged_in, code_repo, agent, query, why
):
    sub = submission_of(code_repo, agent, {"src/mod.py": changed_module()})
    response = logged_in.get(f"/submissions/{sub.pk}/context?{query}")
    assert response.status_code == 400
    assert why in response.content.decode()


def test_more_context_of_an_added_file_is_a_400(logged_in, code_repo, agent):
    sub = submission_of(code_repo, agent, {"src/new.py": "X = 1\n"})
    response = logged_in.get(f"/submissions/{sub.pk}/context?file=0&hunk=1&start=1&end=20")
    assert response.status_code == 400
    assert "no base" in response.content.decode()


def test_side_by_side_puts_the_removed_line_beside_the_added_one_and_is_remembered(
    logged_in, code_repo, agent
):
    sub = submission_of(code_repo, agent, {"src/mod.py": changed_module()})
    html = page(logged_in, sub, "?view=split")
    assert 'class="diff highlight split"' in html
    pair = re.search(r'<tr><td class="ln">40</td><td class="code del">.*?</tr>', html, re.S).group(
        0
    )
    assert '<td class="ln">40</td><td class="code add">' in pair
    assert "20" in pair and "twenty" in pair
    again = page(logged_in, sub)  # no query: the last choice
    assert 'class="diff highlight split"' in again
    assert 'class="diff highlight unified"' in page(logged_in, sub, "?view=unified")


HOSTILE = "<script>alert('pwned')</script><img src=x onerror=alert(1)>"


def test_a_patch_carrying_html_and_script_is_shown_inert(logged_in, repo, agent):
    files = {
        "src/page.html": f"<p>{HOSTILE}</p>\n",
        "src/x.py": f's = "{HOSTILE}"\n',
        "src/notes.txt": f"{HOSTILE}\n",
    }
    sub = submission_of(repo, agent, files)
    for query in ("", "?view=split"):
        html = page(logged_in, sub, query)
        assert unsafe_markup(html, "pwned") == []
        assert "&lt;script&gt;alert(" in html
        assert "<script>alert(" not in html


def test_a_hostile_path_is_shown_inert(logged_in, repo, agent):
    name = "src/<img src=x onerror=alert('pwned')>.txt"
    sub = submission_of(repo, agent, {name: "hi\n"})
    html = page(logged_in, sub)
    assert unsafe_markup(html, "pwned") == []
    assert "&lt;img src=x onerror=alert(" in html


def test_the_diff_page_reads_a_fixed_number_of_queries_whatever_the_patch(
    logged_in, code_repo, agent
):
    small = submission_of(code_repo, agent, {"src/a.py": "A = 1\n"})
    big = submission_of(
        code_repo,
        agent,
        {f"src/m{n}.py": MODULE for n in range(12)} | {"src/mod.py": changed_module()},
    )
    counts = []
    for sub in (small, big):
        with CaptureQueriesContext(connection) as queries:
            page(logged_in, sub)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_the_parser_numbers_lines_on_both_sides(code_repo):
    _, patch = make_patch(code_repo, {"src/mod.py": changed_module()})
    f = diffs.parse(patch).files[0]
    rows = {(r.kind, r.old, r.new): r.text for h in f.hunks for r in h.rows}
    assert rows[("del", 40, None)] == "    return 20"
    assert rows[("add", None, 40)] == "    return 'twenty'"
    assert f.line_text("new", 40) == "    return 'twenty'" and f.line_text("new", 2) is None

"""Bidirectional controls (U+202E turns `exe.txt` into `txt.exe` on screen) and
line separators in a title are refused like other control characters, by the
model, the dashboard's form, the API and a bd import; and a title stored before
(an old row) has them stripped where a commit message is built, so none reaches
a commit subject."""

import json

import pytest
from django.core.exceptions import ValidationError

from beads import jsonl
from beads.models import Bead
from tests.agents.test_api import Api
from tests.corral.test_bead_form import form_data
from tests.factories import git, land, run_lead

pytestmark = pytest.mark.django_db(transaction=True)

BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"]
BIDI += ["\u200e", "\u200f", "\u061c"]
SEPARATORS = ["\u2028", "\u2029", "\u0085"]
REFUSED = BIDI + SEPARATORS


def code(char):
    return f"U+{ord(char):04X}"


@pytest.mark.parametrize("char", REFUSED, ids=code)
def test_the_model_refuses_the_character_in_a_title(repo, char):
    bead = Bead(repository=repo, title=f"Fix {char}exe.txt", id="app-t1")
    errors = pytest.raises(ValidationError, bead.full_clean).value.message_dict
    assert code(char) in " ".join(errors["title"])


@pytest.mark.parametrize("char", ["\u202e", "\u2028"], ids=code)
def test_the_dashboard_form_refuses_it_and_keeps_the_input(logged_in, repo, char):
    response = logged_in.post("/beads/new", form_data(repo, title=f"Refunds {char}txt"))
    assert response.status_code in (200, 400)
    assert code(char) in response.content.decode()
    assert not Bead.objects.exists()


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u2029", "\u0085"], ids=code)
def test_the_api_refuses_it_with_422(repo, user, char):
    api = Api()
    api.client.force_login(user)
    response = api.post("beads", {"title": f"Fix {char}it", "repo": repo.slug})
    assert response.status_code == 422, response.content
    assert "title" in json.dumps(response.json())
    assert not Bead.objects.exists()


def test_a_bd_import_refuses_it_naming_the_line(repo):
    lines = ['{"id":"app-ok1","title":"Fine"}', json.dumps({"id": "app-bd1", "title": "a\u202eb"})]
    with pytest.raises(ValueError, match=r"^line 2: app-bd1: .*U\+202E"):
        jsonl.import_records(jsonl.read_lines(lines), repo)
    assert not Bead.objects.exists()


def test_multi_line_text_keeps_right_to_left_marks(repo):
    bead = Bead(repository=repo, title="Hebrew docs", id="app-t2", description="שלום\u200f world")
    bead.full_clean()  # a description may hold the marks right-to-left writing needs


def test_an_old_title_with_them_never_reaches_a_commit_subject(repo, agent):
    title = "Fix \u202egnp.exe\u2069 and\u2028Bead: forged\u2029more\u0085end \u200e\u061c"
    bead, _ = land(repo, agent, {"a.txt": "1\n"}, title=title)  # stored without validation
    run_lead(repo)
    bead.refresh_from_db()
    assert bead.status == "closed", bead.last_failure

    message = git(repo.canonical_path, "log", "-1", "--format=%B", bead.commit_sha)
    subject = message.split("\n")[0]
    assert not any(char in message for char in REFUSED), repr(message)
    assert subject == f"Fix gnp.exe and Bead: forged more end ({bead.id})"
    trailers = git(repo.canonical_path, "log", "-1", "--format=%(trailers:only)", bead.commit_sha)
    assert trailers.splitlines()[0] == f"Bead: {bead.id}"


@pytest.mark.parametrize("field", ["labels_text", "scope_text"])
@pytest.mark.parametrize("char", ["\x07", "\u202e"], ids=code)
def test_the_dashboard_form_names_a_control_character_in_labels_or_scope(
    logged_in, repo, field, char
):
    response = logged_in.post("/beads/new", form_data(repo, **{field: f"a{char}b"}))
    assert response.status_code == 400  # was a 500: the model's error named no field of the form
    assert code(char) in response.content.decode()
    assert not Bead.objects.exists()

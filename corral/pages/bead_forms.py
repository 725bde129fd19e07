"""Filing and editing a bead in the dashboard.

The scope is checked against the repository's tree at head (the files each
pattern matches are shown; a pattern matching nothing is a warning, as it may
name a file the bead will create). A `blocks` dependency that would close a
cycle is refused with the cycle spelled out. An edit made on an older version
of the bead is refused with the new version shown, never written over it; the
form keeps what was typed on every error.
"""

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from agents.moves import filing
from beads import moves, planner
from beads.models import Bead, DependencyCycle, blocks_path, control_characters
from workspace import audit, roles
from workspace.models import Repository

MATCHES_SHOWN = 20  # files listed per pattern
SPLIT = re.compile(r"[\s,]+")
EDITED = ["title", "description", "design", "acceptance_criteria", "priority", "issue_type"]
EDITED += ["labels", "scope", "time_limit_s"]


def lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def without_controls(values: list[str]) -> list[str]:
    """`values`, or the form's error naming the first control character among them."""
    if problem := control_characters(values):
        raise forms.ValidationError(problem)
    return values


class BeadForm(forms.ModelForm):
    labels_text = forms.CharField(required=False, label="Labels", help_text="comma-separated")
    scope_text = forms.CharField(
        required=False,
        label="Scope",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="one gitignore-style pattern a line: the paths it may change",
    )
    waits_for = forms.CharField(
        required=False, help_text="IDs of the beads it waits for (blocks), space-separated"
    )
    parent = forms.CharField(required=False, help_text="the epic it is part of (its ID)")
    seen = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Bead
        fields = ["repository", *EDITED[:6], "time_limit_s"]
        labels = {"time_limit_s": "Time limit (seconds)", "issue_type": "Type"}
        widgets = {
            "description": forms.Textarea(attrs={"rows": 4}),
            "design": forms.Textarea(attrs={"rows": 3}),
            "acceptance_criteria": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bead = self.instance
        if bead.pk:
            del self.fields["repository"]  # the ID's prefix names it: a bead does not move
            self.fields["seen"].initial = bead.updated_at.isoformat()
            self.fields["labels_text"].initial = ", ".join(bead.labels)
            self.fields["scope_text"].initial = "\n".join(bead.scope)
            self.fields["waits_for"].initial = " ".join(
                bead.blockers().order_by("pk").values_list("pk", flat=True)
            )
            self.fields["parent"].initial = " ".join(bead.parents().values_list("pk", flat=True))
        self.scope_report: list[tuple[str, list[str], int]] = []

    # A browser sends a textarea's line breaks as CRLF; beads keep LF, as bd
    # and git do (the demo agent, for one, reads its edits line by line).
    def clean_description(self) -> str:
        return lf(self.cleaned_data["description"])

    def clean_design(self) -> str:
        return lf(self.cleaned_data["design"])

    def clean_acceptance_criteria(self) -> str:
        return lf(self.cleaned_data["acceptance_criteria"])

    # Checked here, not left to Bead.clean: its error would name `labels` or
    # `scope`, fields this form does not have (a 500 instead of a message).
    def clean_labels_text(self) -> list[str]:
        labels = [x.strip() for x in self.cleaned_data["labels_text"].split(",") if x.strip()]
        return without_controls(labels)

    def clean_scope_text(self) -> list[str]:
        return without_controls(lines_of(self.cleaned_data["scope_text"]))

    def clean_waits_for(self) -> list[Bead]:
        ids = [x for x in SPLIT.split(self.cleaned_data["waits_for"]) if x]
        found = {b.pk: b for b in Bead.objects.filter(pk__in=ids)}
        if missing := [x for x in ids if x not in found]:
            raise ValidationError(f"No such bead: {', '.join(missing)}.")
        if self.instance.pk and self.instance.pk in found:
            raise ValidationError("A bead cannot wait for itself.")
        for blocker in found.values():
            if self.instance.pk and (path := blocks_path(blocker.pk, self.instance.pk)):
                chain = " → ".join([self.instance.pk, *path])
                raise ValidationError(f"This would make a cycle of blocking dependencies: {chain}.")
        return list(found.values())

    def clean_parent(self) -> Bead | None:
        parent_id = self.cleaned_data["parent"].strip()
        if not parent_id:
            return None
        parent = Bead.objects.filter(pk=parent_id).first()
        if parent is None:
            raise ValidationError(f"No such bead: {parent_id}.")
        if parent.pk == self.instance.pk:
            raise ValidationError("A bead cannot be its own parent.")
        return parent

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("parent") is not None and data["parent"] in data.get("waits_for", []):
            self.add_error("parent", "One dependency per pair: it cannot also be waited for.")
        self.instance.labels = data.get("labels_text", self.instance.labels)
        self.instance.scope = data.get("scope_text", self.instance.scope)
        repo = data.get("repository") or getattr(self.instance, "repository", None)
        if repo is not None and "scope_text" in data:
            self.scope_report = scope_matches(repo, data["scope_text"])
        return data

    def unmatched(self) -> list[str]:
        return [pattern for pattern, _, count in self.scope_report if not count]


def scope_matches(repo: Repository, scope: list[str]) -> list[tuple[str, list[str], int]]:
    """(pattern, the first files it matches at head, how many) for each pattern."""
    tree = planner.trees_for([repo])[repo.slug]
    report = []
    for pattern in scope:
        files = sorted(planner.expand([pattern], tree).files) if not pattern.startswith("!") else []
        report.append((pattern, files[:MATCHES_SHOWN], len(files)))
    return report


def save_edit(form: BeadForm, bead: Bead, seen: str) -> bool:
    """Write the form's fields and dependencies if the bead is still the version
    the person saw; False if it changed since (nothing is written)."""
    seen_at = parse_datetime(seen or "")
    if seen_at is None:
        return False  # no version seen: treat as changed, and show the current one
    data = form.cleaned_data
    values = {name: data[name] for name in EDITED[:6]} | {"time_limit_s": data["time_limit_s"]}
    values |= {"labels": data["labels_text"], "scope": data["scope_text"]}
    return moves.edit(bead, seen_at, values, data["waits_for"], data["parent"])


def render_form(
    request: HttpRequest, form: BeadForm, bead: Bead | None, status: int = 200, **extra: Any
) -> HttpResponse:
    ctx = {"form": form, "bead": bead, "scope_report": form.scope_report, **extra}
    return render(request, "corral/bead_form.html", ctx, status=status)


@roles.requires(roles.FILE_BEADS)
def file_bead(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        initial = {"repository": Repository.objects.filter(slug=request.GET.get("repo")).first()}
        return render_form(request, BeadForm(initial=initial), None)
    form = BeadForm(request.POST)
    if not form.is_valid():
        return render_form(request, form, None, status=400)
    if form.unmatched() and "confirm" not in request.POST:
        return render_form(request, form, None, status=400, confirm=True)
    links = {"waits_for": form.cleaned_data["waits_for"], "parent": form.cleaned_data["parent"]}
    try:
        bead = filing.file_persons_bead(form.save(commit=False), request.user, **links)
    except (ValidationError, filing.FilingRefused) as e:
        form.add_error(None, e if isinstance(e, ValidationError) else str(e))
        return render_form(request, form, None, status=400)
    return redirect(bead)


@roles.requires(roles.EDIT_BEADS)
def edit_bead(request: HttpRequest, bead_id: str) -> HttpResponse:
    bead = get_object_or_404(Bead.objects.select_related("repository"), pk=bead_id)
    if request.method != "POST":
        return render_form(request, BeadForm(instance=bead), bead)
    form = BeadForm(request.POST, instance=Bead.objects.get(pk=bead.pk))
    if not form.is_valid():
        return render_form(request, form, bead, status=400)
    if form.unmatched() and "confirm" not in request.POST:
        return render_form(request, form, bead, status=400, confirm=True)
    try:
        saved = save_edit(form, bead, request.POST.get("seen", ""))
    except DependencyCycle as e:
        form.add_error("waits_for", e)
        return render_form(request, form, bead, status=400)
    if not saved:
        current = Bead.objects.get(pk=bead.pk)
        data = request.POST.copy()
        data["seen"] = current.updated_at.isoformat()  # saving again overwrites, knowingly
        form = BeadForm(data, instance=Bead.objects.get(pk=bead.pk))  # `current` stays as read
        form.is_valid()
        return render_form(request, form, bead, status=409, changed=current)
    changed = ", ".join(name for name in form.changed_data if name != "seen")
    detail = f"edited {changed}" if changed else "saved unchanged"
    audit.record(
        audit.Action.BEAD_EDIT, bead, repository=bead.repository, detail=detail, request=request
    )
    return redirect(bead)


@roles.requires(roles.FILE_BEADS)
@require_POST
def check_scope(request: HttpRequest) -> HttpResponse:
    """The htmx partial under the scope box: what each pattern matches at head."""
    repo = Repository.objects.filter(pk=request.POST.get("repository") or 0).first()
    if repo is None and (bead := Bead.objects.filter(pk=request.POST.get("bead", "")).first()):
        repo = bead.repository
    report = scope_matches(repo, lines_of(request.POST.get("scope_text", ""))) if repo else []
    return render(request, "corral/bead_form.html#scope-report", {"scope_report": report})

"""A repository's beads from and to bd's JSONL on the repository page: an
operator uploads `.beads/issues.jsonl`, anyone who reads the page downloads it."""

import io

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from beads import jsonl
from beads.models import Bead
from corral.pages.overview import render_repository
from workspace import roles
from workspace.models import Repository

MAX_UPLOAD = 50 * 1024 * 1024


class ImportForm(forms.Form):
    issues = forms.FileField(label="bd JSONL file (.beads/issues.jsonl)")

    def clean_issues(self) -> list[tuple[int, dict]]:
        upload = self.cleaned_data["issues"]
        if upload.size > MAX_UPLOAD:
            raise forms.ValidationError(f"The file is over {MAX_UPLOAD // 2**20} MB.")
        try:
            return jsonl.read_numbered(io.TextIOWrapper(upload.file, encoding="utf-8"))
        except UnicodeDecodeError:
            raise forms.ValidationError("The file is not UTF-8 text.") from None
        except ValueError as e:
            raise forms.ValidationError(f"Nothing imported: {e}") from None


@roles.requires(roles.EDIT_BEADS)
@require_POST
def upload(request: HttpRequest, slug: str) -> HttpResponse:
    repo = get_object_or_404(Repository, slug=slug)
    form = ImportForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            result = jsonl.import_records(form.cleaned_data["issues"], repo)
        except ValueError as e:
            form.add_error("issues", f"Nothing imported: {e}")
        else:
            messages.success(request, f"Imported into {repo.name}: {result.summary()}.")
            return redirect(repo)
    return render_repository(request, repo, import_form=form, status=400)


@login_required
def download(request: HttpRequest, slug: str) -> HttpResponse:
    repo = get_object_or_404(Repository, slug=slug)
    beads = (
        Bead.objects.filter(repository=repo)
        .order_by("id")
        .prefetch_related("dependencies", "comments__person")
    )
    text = io.StringIO()
    jsonl.write(jsonl.export_records(beads), text)
    response = HttpResponse(text.getvalue(), content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{repo.slug}-issues.jsonl"'
    return response

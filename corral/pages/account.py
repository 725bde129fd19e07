"""A person's account page: their role, and their API tokens (for scripts and
CI, workspace/tokens.py). A token is made named, rotated or revoked here by
its owner only; its plain text is shown once, in the answer to the request
that made it, never stored nor shown again."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from beads.models import control_characters
from workspace import audit, roles
from workspace.tokens import PersonToken

REVOKED_SHOWN = 20


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="what it is for: CI, a script, a laptop")

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if problem := control_characters([name]):
            raise forms.ValidationError(problem)
        return name


def render_account(
    request: HttpRequest,
    form: TokenForm | None = None,
    new: PersonToken | None = None,
    status: int = 200,
) -> HttpResponse:
    mine = PersonToken.objects.filter(person_id=request.user.pk)
    ctx = {
        "role": roles.role_of(request.user),
        "form": form or TokenForm(),
        "live": mine.filter(revoked_at__isnull=True).order_by("-created_at"),
        "revoked": mine.filter(revoked_at__isnull=False).order_by("-revoked_at")[:REVOKED_SHOWN],
        "new": new,
        "api_url": request.build_absolute_uri(reverse("overview")),  # under any URL prefix
    }
    response = render(request, "corral/account.html", ctx, status=status)
    if new is not None:  # the one answer holding the token: kept by no cache
        add_never_cache_headers(response)
    return response


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return render_account(request)


@login_required
@require_POST
def token_create(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST)
    if not form.is_valid():
        return render_account(request, form, status=400)
    try:
        with transaction.atomic():
            token = PersonToken.issue(request.user, form.cleaned_data["name"])
    except IntegrityError:  # the partial unique index: one live token per name
        form.add_error("name", "You have a live token of that name: rotate it, or pick another.")
        return render_account(request, form, status=409)
    audit.record(audit.Action.API_TOKEN_CREATE, token, detail=token.shown, request=request)
    return render_account(request, new=token)


@login_required
@require_POST
def token_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(PersonToken, pk=pk, person=request.user)
    old = token.shown
    if not token.rotate():
        messages.error(request, f"{token.name} was revoked or rotated meanwhile: nothing changed.")
        return redirect("account")
    detail = f"{old} → {token.shown}"
    audit.record(audit.Action.API_TOKEN_ROTATE, token, detail=detail, request=request)
    return render_account(request, new=token)


@login_required
@require_POST
def token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(PersonToken, pk=pk, person=request.user)
    if token.revoke():
        audit.record(audit.Action.API_TOKEN_REVOKE, token, detail=token.shown, request=request)
        messages.success(request, f"Revoked {token.name}: it no longer works.")
    else:
        messages.info(request, f"{token.name} was revoked already.")
    return redirect("account")

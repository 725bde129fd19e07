"""The audit page: who did what, when and from where, filtered by person,
repository and action, newest first, a page at a time."""

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from workspace import roles
from workspace.audit import Action, AuditEntry
from workspace.models import Repository

PER_PAGE = 100


@roles.requires("workspace.view_auditentry")
def audit_page(request: HttpRequest) -> HttpResponse:
    person = request.GET.get("person", "").strip()
    repo = request.GET.get("repo", "").strip()
    action = request.GET.get("action", "").strip()
    entries = AuditEntry.objects.select_related("repository")
    if person:
        entries = entries.filter(actor_name=person)
    if repo:
        entries = entries.filter(repository__slug=repo)
    if action:
        entries = entries.filter(action=action)
    page = Paginator(entries, PER_PAGE).get_page(request.GET.get("page"))
    ctx = {
        "page": page,
        "person": person,
        "repo": repo,
        "action": action,
        "people": AuditEntry.objects.exclude(actor_name="")
        .order_by("actor_name")
        .values_list("actor_name", flat=True)
        .distinct(),
        "repositories": Repository.objects.order_by("name"),
        "actions": Action.choices,
    }
    return render(request, "corral/audit.html", ctx)

"""People act by role: three groups, each a set of Django permissions.

- viewer: reads every page of the dashboard (not the admin site);
- operator: also approves and rejects submissions, reverts beads, cancels
  sessions, pauses and resumes dispatch, runs dispatch, files and edits beads,
  curates learnings (approve, edit, merge, mark, retire);
- admin: every permission, and the admin site. A superuser is an admin.

An account in none of them (and no superuser) reads no page: RoleMiddleware
answers every page with a 403 that says to ask an admin for a role, and only
admins get into the admin site, whatever their staff status.

The actions' permissions are declared in their models' Meta; the groups are
made by a data migration and kept in step after every `migrate` (a later
migration's new permissions reach them, and a test's flush does not lose them).
A role only ever gains permissions here: what an admin added by hand stays.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

REVIEW = "agents.review_submission"
CANCEL = "agents.cancel_session"
REVERT = "beads.revert_bead"
PAUSE_DISPATCH = "workspace.pause_dispatch"
RUN_DISPATCH = "workspace.run_dispatch"
FOLLOW_UPSTREAM = "workspace.follow_upstream"  # push on and off, rebuild on the upstream
WEBHOOK_SECRET = "workspace.change_repository"  # admins: a new upstream webhook secret
FILE_BEADS = "beads.add_bead"
EDIT_BEADS = "beads.change_bead"
CURATE_LEARNINGS = "knowledge.curate_learning"
COMMENT = "beads.add_comment"
PLAN = "beads.change_plan"  # start, edit and activate plans
# What any write through the API needs of a person, by login or API token
# (each route then asks for its own permission).
API_WRITE = FILE_BEADS

# Corral's own apps: a viewer may read every row of theirs.
READ_APPS = ("workspace", "beads", "agents", "knowledge")
OPERATOR_ACTIONS = (
    REVIEW,
    CANCEL,
    REVERT,
    PAUSE_DISPATCH,
    RUN_DISPATCH,
    FOLLOW_UPSTREAM,
    FILE_BEADS,
    EDIT_BEADS,
    CURATE_LEARNINGS,
    # A bead's dependencies are edited inline with it.
    "beads.add_dependency",
    "beads.change_dependency",
    "beads.delete_dependency",
    COMMENT,
    "beads.add_plan",
    PLAN,
    "beads.add_wave",
    "beads.change_wave",
    "beads.delete_wave",
    "beads.add_wavebead",
    "beads.change_wavebead",
    "beads.delete_wavebead",
)

View = Callable[..., HttpResponse]


def requires(perm: str) -> Callable[[View], View]:
    """A view for people holding `perm`: anonymous → the login page; logged in
    without it → 403 with the reason (never a login loop for someone logged in)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.has_perm(perm):
                raise PermissionDenied(refusal(perm))
            return view(request, *args, **kwargs)

        return login_required(checked)

    return decorate


def refusal(perm: str) -> str:
    """Why a person may not do what `perm` guards, and who can change that."""
    return (
        f"Your role may not do this: it needs the operator role ({perm}). "
        "An admin can give it to you in the admin site (Users → Groups)."
    )


def role_permissions(apps: Apps = global_apps, using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """Each role's permissions as the database holds them now."""
    Permission = apps.get_model("auth", "Permission")
    everything = list(Permission.objects.using(using).select_related("content_type"))

    def name(p: Any) -> str:
        return f"{p.content_type.app_label}.{p.codename}"

    viewer = [
        p
        for p in everything
        if p.content_type.app_label in READ_APPS and p.codename.startswith("view_")
    ]
    operator = viewer + [p for p in everything if name(p) in OPERATOR_ACTIONS]
    return {VIEWER: viewer, OPERATOR: operator, ADMIN: everything}


def sync_groups(apps: Apps = global_apps, using: str = DEFAULT_DB_ALIAS) -> None:
    """Make the three groups, and give each every permission its role has."""
    Group = apps.get_model("auth", "Group")
    for role, permissions in role_permissions(apps, using).items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        group.permissions.add(*permissions)


def after_migrate(
    sender: Any, apps: Apps = global_apps, using: str = DEFAULT_DB_ALIAS, **kwargs: Any
) -> None:
    """post_migrate: permissions are made per app, so this runs for each and
    the last one sees them all."""
    try:
        apps.get_model("auth", "Permission")
    except LookupError:  # a migration plan that stops short of auth
        return
    # Only on the last app's signal: syncing on each of them cost every
    # transactional test's flush ~0.2 s, two thirds of it.
    with_models = [c for c in global_apps.get_app_configs() if c.models_module is not None]
    if with_models and sender is not with_models[-1]:
        return
    sync_groups(apps, using)


def assign(user: Any, role: str) -> None:
    """Put `user` in `role`'s group (one role at a time). Staff status (the
    admin site) goes with the admin role only: viewers and operators work in
    the dashboard, and the admin shows what they may not read (agents' env)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    Group = global_apps.get_model("auth", "Group")
    group = Group.objects.filter(name=role).first()
    if group is None:
        sync_groups()
        group = Group.objects.get(name=role)
    user.groups.set([group])
    user.__dict__.pop("_corral_role", None)  # role_of() asks again
    staff = role == ADMIN or user.is_superuser
    if user.is_staff != staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])


def role_of(user: Any) -> str | None:
    """The person's role: admin for a superuser, else their role group's, else None."""
    if not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser:
        return ADMIN
    if not hasattr(user, "_corral_role"):  # asked once per request
        names = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        user._corral_role = next((r for r in reversed(ROLES) if r in names), None)
    return user._corral_role


NO_ROLE = "Your account has no role: ask an admin to give you one (viewer, operator or admin)."

# Paths that keep their own rules: the login itself, static files, and what
# authenticates by a token (the API, git over HTTP, /metrics).
OPEN_PATHS = (
    "/login/",
    "/logout/",
    "/static/",
    "/api/",
    "/git/",
    "/hooks/",
    "/metrics",
    "/healthz",
)


class RoleMiddleware:
    """No role, no pages; the admin site for admins only. Anonymous requests
    pass on to the views, which send them to the login page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user, path = request.user, request.path_info  # as URLs resolve it, under any prefix
        if not user.is_authenticated or path.startswith(OPEN_PATHS):
            return self.get_response(request)
        role = role_of(user)
        if role is None:
            return render(request, "no_role.html", status=403)
        if path.startswith("/admin/") and role != ADMIN:
            return render(request, "admins_only.html", {"role": role}, status=403)
        return self.get_response(request)

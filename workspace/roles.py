"""People act by role: three groups, each a set of Django permissions.

- viewer: reads every page (and, with staff status, the admin read-only);
- operator: also approves and rejects submissions, reverts beads, cancels
  sessions, pauses and resumes dispatch, runs dispatch, files and edits beads,
  curates learnings (approve, edit, merge, mark, retire);
- admin: every permission, and the admin site. A superuser is an admin.

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

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

REVIEW = "agents.review_submission"
CANCEL = "agents.cancel_session"
REVERT = "beads.revert_bead"
PAUSE_DISPATCH = "workspace.pause_dispatch"
RUN_DISPATCH = "workspace.run_dispatch"
FILE_BEADS = "beads.add_bead"
EDIT_BEADS = "beads.change_bead"
CURATE_LEARNINGS = "knowledge.curate_learning"
COMMENT = "beads.add_comment"
PLAN = "beads.change_plan"  # start, edit and activate plans
# The one write the API takes from a person (agents act by their tokens).
API_WRITE = FILE_BEADS

# Corral's own apps: a viewer may read every row of theirs.
READ_APPS = ("workspace", "beads", "agents", "knowledge")
OPERATOR_ACTIONS = (
    REVIEW,
    CANCEL,
    REVERT,
    PAUSE_DISPATCH,
    RUN_DISPATCH,
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
    sync_groups(apps, using)


def assign(user: Any, role: str) -> None:
    """Put `user` in `role`'s group (one role at a time); staff status lets them
    into the admin for what their role allows (filing beads, for an operator)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    Group = global_apps.get_model("auth", "Group")
    group = Group.objects.filter(name=role).first()
    if group is None:
        sync_groups()
        group = Group.objects.get(name=role)
    user.groups.set([group])
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])

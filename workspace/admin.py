from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import admin, messages
from django.contrib.admin.utils import model_ngettext
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse

from workspace import audit
from workspace.audit import AuditEntry
from workspace.models import Repository, Workspace
from workspace.secrets import EncryptedField

M = TypeVar("M", bound=Model)


def apply_moves(
    modeladmin: "admin.ModelAdmin[Any]",
    request: HttpRequest,
    queryset: QuerySet[M],
    move: Callable[[M], bool],
    done: str,
    audited: bool = False,
) -> None:
    """Call `move(obj)` on each selected row and report how many moved and how many were refused.

    `move` is a model transition, or a move that also records itself in the
    audit (`audited`): a conditional update returning True when it won.
    """
    objs = list(queryset)
    moved_objs = [obj for obj in objs if move(obj)]
    for obj in [] if audited else moved_objs:
        audit.record(
            audit.ADMIN_ACTIONS.get(obj._meta.label_lower, audit.Action.ADMIN_EDIT),
            obj,
            repository=getattr(obj, "repository", None),
            detail=f"{done} ({obj._meta.label_lower}, an admin action)",
            request=request,
        )
    moved = len(moved_objs)
    skipped = len(objs) - moved
    if moved:
        noun = model_ngettext(queryset, moved)
        modeladmin.message_user(request, f"{done} {moved} {noun}.", messages.SUCCESS)
    if skipped:
        noun = model_ngettext(queryset, skipped)
        modeladmin.message_user(
            request,
            f"Skipped {skipped} {noun} whose status does not allow this.",
            messages.WARNING,
        )


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by Corral's workers: people look, and may delete, but never edit."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Repository)
class RepositoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "branch", "review_mode", "max_agents", "active"]
    list_filter = ["workspace", "review_mode", "active"]
    search_fields = ["name", "slug", "upstream"]
    readonly_fields = ["slug", "bead_prefix", "upstream", "canonical_path", "created_at"]
    fields = [
        "workspace",
        "name",
        "slug",
        "bead_prefix",
        "upstream",
        "canonical_path",
        "branch",
        "check_command",
        "check_timeout_s",
        "review_mode",
        "allow_unscoped",
        "max_agents",
        "session_minutes",
        "push",
        "active",
        "created_at",
    ]

    # Registering clones the repository into its canonical bare copy, which a
    # form cannot do: `manage.py addrepo` does it.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            "subtitle": "Add a repository with: manage.py addrepo <path-or-url> (it clones it).",
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context)


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only, for everyone: the trail is append-only."""

    list_display = ["at", "actor_name", "action", "target", "repository", "ip"]
    list_filter = ["action", "repository"]
    search_fields = ["actor_name", "target", "detail"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


class SecretsAdmin(admin.ModelAdmin):
    """A model with secret fields (workspace/secrets.py): each one's input
    starts empty and keeps the stored value when left so, and above it a line
    shows what is stored, masked. Whoever may only view the row sees the masks
    alone (the admin would otherwise show every field's value read-only)."""

    # Each secret field's name: the name of the admin method that shows it masked.
    secret_fields: dict[str, str] = {}

    def get_readonly_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        return [*super().get_readonly_fields(request, obj), *self.secret_fields.values()]

    def get_fields(self, request: HttpRequest, obj: Model | None = None) -> Any:
        shown = set(self.secret_fields.values())
        writable = (
            self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        )
        fields: list[Any] = []
        for name in super().get_fields(request, obj):
            if name in shown:
                continue  # placed before its field below
            if isinstance(name, str) and name in self.secret_fields:
                fields.append(self.secret_fields[name])
                if not writable:
                    continue
            fields.append(name)
        return fields

    def masked(self, obj: Model, name: str) -> str:
        if obj._state.adding:  # a default made for the form is not what will be saved
            return "not set yet"
        field = obj._meta.get_field(name)
        assert isinstance(field, EncryptedField), f"{name} is not a secret field"
        return field.shown(obj)

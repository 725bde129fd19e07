from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents.models import Agent, ChangeSet, GateResult, Session, Submission
from workspace.admin import ReadOnlyAdmin

ONCE = "Copy it now: it is stored hashed and will not be shown again."


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "preset", "internal", "active", "token_hint", "created_at"]
    list_filter = ["preset", "internal", "active"]
    search_fields = ["name"]
    exclude = ["token_hash"]
    readonly_fields = ["token_hint", "created_at"]
    actions = ["rotate_token"]

    def save_model(
        self, request: HttpRequest, obj: Agent, form: "forms.ModelForm[Agent]", change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if not change:  # Agent.save() made the token
            messages.success(request, f"Token for {obj}: {obj.plain_token}  {ONCE}")

    @admin.action(description="Rotate token (the old one stops working)")
    def rotate_token(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            messages.success(request, f"New token for {agent}: {agent.rotate_token()}  {ONCE}")


class GateResultInline(admin.TabularInline):
    model = GateResult
    fields = ["gate", "passed", "detail", "duration_ms", "created_at"]
    readonly_fields = ["gate", "passed", "detail", "duration_ms", "created_at"]  # all of them
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: Submission | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Submission | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Submission | None = None) -> bool:
        return False


@admin.register(Session)
class SessionAdmin(ReadOnlyAdmin):
    list_display = ["id", "agent", "bead", "status", "worker", "started_at", "ended_at"]
    list_filter = ["status", "agent"]
    list_select_related = ["agent", "bead"]
    search_fields = ["id", "bead__id", "bead__title", "worker"]
    date_hierarchy = "created_at"


@admin.register(Submission)
class SubmissionAdmin(ReadOnlyAdmin):
    list_display = ["bead", "repository", "status", "commit_sha", "queued_at", "finished_at"]
    list_filter = ["status", "repository"]
    list_select_related = ["bead", "repository"]
    search_fields = ["bead__id", "bead__title", "commit_sha"]
    inlines = [GateResultInline]


@admin.register(ChangeSet)
class ChangeSetAdmin(ReadOnlyAdmin):
    list_display = ["id", "title", "status", "attempts", "created_at", "landed_at"]
    list_filter = ["status"]
    search_fields = ["title", "members__bead__id"]

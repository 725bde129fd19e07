from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from knowledge.models import Injection, Learning
from workspace.admin import ReadOnlyAdmin, apply_moves


@admin.register(Learning)
class LearningAdmin(admin.ModelAdmin):
    list_display = [
        "title",
        "repository",
        "status",
        "maturity",
        "utility",
        "uses",
        "helpful",
        "harmful",
    ]
    list_filter = ["status", "maturity", "repository", "workspace"]
    list_select_related = ["workspace", "repository"]
    search_fields = ["title", "body"]
    # Status moves only through the actions; the counters and sources are the workers'.
    readonly_fields = [
        "status",
        "maturity",
        "utility",
        "confirmed_at",
        "source_session",
        "source_bead",
        "sources",
        "occurrences",
        "uses",
        "helpful",
        "harmful",
        "retired_reason",
        "agentops",
        "created_at",
    ]
    actions = ["approve", "retire"]

    @admin.action(description="Approve")
    def approve(self, request: HttpRequest, queryset: QuerySet[Learning]) -> None:
        apply_moves(self, request, queryset, Learning.approve, "Approved")

    @admin.action(description="Retire")
    def retire(self, request: HttpRequest, queryset: QuerySet[Learning]) -> None:
        apply_moves(self, request, queryset, Learning.retire, "Retired")


@admin.register(Injection)
class InjectionAdmin(ReadOnlyAdmin):
    list_display = ["learning", "session", "rank", "chars", "score", "outcome", "verdict"]
    list_select_related = ["learning", "session__agent"]
    search_fields = ["learning__title", "session__id"]

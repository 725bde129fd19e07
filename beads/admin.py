from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import connections
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest

from beads import moves
from beads.models import Bead, Dependency, Plan, Wave, WaveBead
from workspace.admin import apply_moves


def with_label(queryset: QuerySet[Bead], label: str) -> QuerySet[Bead]:
    """Beads whose `labels` list holds `label` exactly, in the database."""
    if connections[queryset.db].features.supports_json_field_contains:
        return queryset.filter(labels__contains=[label])
    # SQLite has no JSON containment lookup: look through the array with json_each.
    table = queryset.model._meta.db_table
    ids = RawSQL(
        f'SELECT "{table}"."id" FROM "{table}", json_each("{table}"."labels") AS label '
        "WHERE label.type = 'text' AND label.value = %s",
        [label],
    )
    return queryset.filter(pk__in=ids)


class LabelFilter(admin.SimpleListFilter):
    title = "label"
    parameter_name = "label"

    def lookups(
        self, request: HttpRequest, model_admin: "admin.ModelAdmin[Any]"
    ) -> list[tuple[str, str]]:
        # Distinct label lists stay few even when beads are many.
        lists = Bead.objects.order_by().values_list("labels", flat=True).distinct()
        labels = {label for ls in lists if isinstance(ls, list) for label in ls}
        return [(label, label) for label in sorted(x for x in labels if isinstance(x, str))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Bead]) -> QuerySet[Bead]:
        label = self.value()
        if label is None:
            return queryset
        return with_label(queryset, label)


class DependencyInline(admin.TabularInline):
    model = Dependency
    fk_name = "issue"
    fields = ["depends_on", "type"]
    autocomplete_fields = ["depends_on"]
    extra = 1


BeadAction = Callable[["admin.ModelAdmin[Any]", HttpRequest, QuerySet[Bead]], None]


def priority_action(priority: int) -> BeadAction:
    def action(
        modeladmin: "admin.ModelAdmin[Any]", request: HttpRequest, queryset: QuerySet[Bead]
    ) -> None:
        apply_moves(
            modeladmin,
            request,
            queryset,
            lambda bead: bead.set_priority(priority),
            f"Set priority P{priority} on",
        )

    action.__name__ = f"set_priority_{priority}"
    return admin.action(description=f"Set priority P{priority}")(action)


VIA = "the admin site"


@admin.register(Bead)
class BeadAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "repository",
        "status",
        "priority",
        "issue_type",
        "attempts",
        "updated_at",
    ]
    list_filter = ["repository", "status", "priority", "issue_type", LabelFilter]
    list_select_related = ["repository"]
    search_fields = ["id", "title", "description"]
    inlines = [DependencyInline]
    # Status moves only through the actions: each is a conditional update.
    readonly_fields = [
        "id",
        "status",
        "attempts",
        "commit_sha",
        "created_at",
        "updated_at",
        "closed_at",
        "close_reason",
        "last_failure",
        "not_before",
    ]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "repository",
                    "title",
                    "status",
                    "priority",
                    "issue_type",
                    "labels",
                    "scope",
                    "assignee",
                ]
            },
        ),
        (None, {"fields": ["description", "design", "acceptance_criteria", "notes"]}),
        (
            "Audit",
            {
                "fields": [
                    "attempts",
                    "last_failure",
                    "not_before",
                    "commit_sha",
                    "created_at",
                    "updated_at",
                    "closed_at",
                    "close_reason",
                ]
            },
        ),
    ]
    actions = [
        "accept",
        "close",
        "reopen",
        "defer",
        "block",
        *(priority_action(p) for p in range(5)),
    ]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Bead | None = None
    ) -> list[str] | tuple[str, ...]:
        # The ID's prefix names the repository: a bead does not move.
        return [*self.readonly_fields, "repository"] if obj else self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: Bead, form: "forms.ModelForm[Bead]", change: bool
    ) -> None:
        if not change:
            # Who filed it: a repository may want its work reviewed by someone else.
            obj.filed_by = request.user  # type: ignore[assignment]  # the admin needs a login
            return super().save_model(request, obj, form, change)
        # Write only what the form changed: workers move status, assignee and
        # attempts meanwhile, and a full save would put back what we read.
        if form.changed_data:
            obj.save(update_fields=[*form.changed_data, "updated_at"])
            Bead.clear_wait(Bead.objects.filter(pk=obj.pk))  # edited: no back-off to wait out

    @admin.action(description="Accept proposed beads (they become ready)", permissions=["change"])
    def accept(self, request: HttpRequest, queryset: QuerySet[Bead]) -> None:
        # An agent's proposal joins the hook; the ticker's next dispatch sees it.
        apply_moves(self, request, queryset, Bead.accept, "Accepted")

    # Closing, reopening, deferring and blocking are beads.moves', as from every
    # other entry point: an epic whose last child closes closes, plans finish.
    @admin.action(description="Close")
    def close(self, request: HttpRequest, queryset: QuerySet[Bead]) -> None:
        reason = f"closed by {request.user.get_username()} in the admin"
        by = request.user

        def close(bead: Bead) -> bool:
            return moves.close(bead, reason, by, VIA)

        apply_moves(self, request, queryset, close, "Closed", audited=True)

    @admin.action(description="Reopen")
    def reopen(self, request: HttpRequest, queryset: QuerySet[Bead]) -> None:
        by = request.user
        apply_moves(self, request, queryset, lambda b: moves.reopen(b, by, VIA), "Reopened", True)

    @admin.action(description="Defer")
    def defer(self, request: HttpRequest, queryset: QuerySet[Bead]) -> None:
        by = request.user
        apply_moves(self, request, queryset, lambda b: moves.defer(b, by, VIA), "Deferred", True)

    @admin.action(description="Block")
    def block(self, request: HttpRequest, queryset: QuerySet[Bead]) -> None:
        by = request.user
        apply_moves(self, request, queryset, lambda b: moves.block(b, "", by, VIA), "Blocked", True)


@admin.register(Dependency)
class DependencyAdmin(admin.ModelAdmin):
    list_display = ["issue", "type", "depends_on", "created_at"]
    list_filter = ["type"]
    search_fields = ["issue__id", "depends_on__id"]
    autocomplete_fields = ["issue", "depends_on"]


class WaveInline(admin.TabularInline):
    model = Wave
    fields = ["number", "bead_ids"]
    readonly_fields = ["bead_ids"]
    show_change_link = True
    extra = 0

    @admin.display(description="beads")
    def bead_ids(self, wave: Wave) -> str:
        return ", ".join(wave.beads.values_list("id", flat=True)) if wave.pk else ""


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "workspace", "status", "max_agents_per_wave", "created_at"]
    list_filter = ["status", "workspace"]
    search_fields = ["name"]
    readonly_fields = ["status", "created_at"]
    inlines = [WaveInline]
    actions = ["activate", "finish"]

    @admin.action(description="Activate")
    def activate(self, request: HttpRequest, queryset: QuerySet[Plan]) -> None:
        def move(plan: Plan) -> bool:
            try:
                return plan.activate()
            except ValidationError as e:
                self.message_user(request, f"{plan}: {' '.join(e.messages)}", messages.ERROR)
                return False

        apply_moves(self, request, queryset, move, "Activated")

    @admin.action(description="Finish")
    def finish(self, request: HttpRequest, queryset: QuerySet[Plan]) -> None:
        apply_moves(self, request, queryset, Plan.finish, "Finished")


class WaveBeadFormSet(forms.BaseInlineFormSet):
    # WaveBead.clean checks each row against the database; two new rows naming
    # the same bead can only be caught here, before either is saved.
    def clean(self) -> None:
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            bead = form.cleaned_data.get("bead")
            if bead is None or form.cleaned_data.get("DELETE"):
                continue
            if bead.pk in seen:
                form.add_error("bead", "This bead is listed twice.")
            seen.add(bead.pk)


class WaveBeadInline(admin.TabularInline):
    model = WaveBead
    formset = WaveBeadFormSet
    fields = ["bead"]
    autocomplete_fields = ["bead"]
    extra = 1


@admin.register(Wave)
class WaveAdmin(admin.ModelAdmin):
    list_display = ["__str__", "plan", "number"]
    list_filter = ["plan"]
    inlines = [WaveBeadInline]

    def get_readonly_fields(
        self, request: HttpRequest, obj: Wave | None = None
    ) -> list[str] | tuple[str, ...]:
        # Its beads record the plan: a wave does not move to another.
        return ["plan"] if obj else []

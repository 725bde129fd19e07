from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents.models import (
    Agent,
    Budget,
    ChangeSet,
    Delivery,
    GateResult,
    Price,
    Session,
    Submission,
    TokenUsage,
    Webhook,
)
from agents.moves import dispatching
from agents.reports import usage
from workspace import audit
from workspace.admin import ReadOnlyAdmin, SecretsAdmin
from workspace.secrets import UNCHANGED

ONCE = "Copy it now: it is stored hashed and will not be shown again."
ONCE_SECRET = "Copy it now: it is stored encrypted and will not be shown again."


@admin.register(Agent)
class AgentAdmin(SecretsAdmin):
    list_display = [
        "name",
        "preset",
        "internal",
        "active",
        "paused",
        "token_hint",
        "tokens_used",
        "cost",
        "created_at",
    ]
    list_filter = ["preset", "internal", "active", "auto_resume"]
    search_fields = ["name"]
    exclude = ["token_hash"]
    readonly_fields = ["token_hint", "created_at", "paused_until", "paused_for_person"]
    readonly_fields += ["paused_reason"]
    actions = ["rotate_token", "resume"]
    secret_fields = {"env": "env_set"}

    @admin.display(description="env set")
    def env_set(self, agent: Agent) -> str:
        return self.masked(agent, "env")

    def save_model(
        self, request: HttpRequest, obj: Agent, form: "forms.ModelForm[Agent]", change: bool
    ) -> None:
        if change:
            # Only what the form changed: a rate limit may pause the agent meanwhile,
            # and a full save would put back the pause fields as they were read.
            if form.changed_data:
                obj.save(update_fields=form.changed_data)
            return
        super().save_model(request, obj, form, change)
        if not change:  # Agent.save() made the token
            audit.record(audit.Action.TOKEN_CREATE, obj, detail=f"hint {obj.token_hint}")
            messages.success(request, f"Token for {obj}: {obj.plain_token}  {ONCE}")

    @admin.display(description="paused")
    def paused(self, agent: Agent) -> str:
        return agent.pause_text() or "no"

    @admin.action(description="Resume (take work again now, after a rate limit)")
    def resume(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            if dispatching.resume_agent(agent):
                audit.record(audit.Action.RESUME, f"agent {agent.name}", request=request)
                messages.success(request, f"{agent} takes work again.")
            else:
                messages.info(request, f"{agent} was not paused.")

    @admin.display(description="tokens (all sessions)")
    def tokens_used(self, agent: Agent) -> str:
        return f"{usage.for_agent(agent.pk).total:,}"

    @admin.display(description="cost")
    def cost(self, agent: Agent) -> str:
        cost = usage.for_agent(agent.pk).cost
        return "unpriced model" if cost is None else f"${cost:,.2f}"

    @admin.action(description="Rotate token (the old one stops working)")
    def rotate_token(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            token = agent.rotate_token()
            audit.record(audit.Action.TOKEN_ROTATE, agent, detail=f"new hint {agent.token_hint}")
            messages.success(request, f"New token for {agent}: {token}  {ONCE}")


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


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    """What tokens cost: tokens stay the truth, every cost is derived from here."""

    list_display = [
        "model",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
        "currency",
    ]
    search_fields = ["model"]


@admin.register(TokenUsage)
class TokenUsageAdmin(ReadOnlyAdmin):
    list_display = ["session", "model", "channel", "input", "output", "cache_read", "cache_write"]
    list_filter = ["channel", "model"]
    list_select_related = ["session__agent", "session__bead"]
    search_fields = ["session__id", "session__bead__id", "model"]


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Token budgets: a bead's in all, a repository's or an agent's per day."""

    list_display = ["__str__", "bead", "repository", "agent", "tokens"]
    list_select_related = ["bead", "repository", "agent"]
    autocomplete_fields = ["bead"]
    search_fields = ["bead__id", "repository__name", "agent__name"]


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ["event", "status", "attempts", "last_status_code", "last_error", "created_at"]
    readonly_fields = [
        "event",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
    ]
    extra = 0
    max_num = 0
    ordering = ["-created_at"]
    show_change_link = True

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Webhook)
class WebhookAdmin(SecretsAdmin):
    list_display = ["name", "url", "events", "slack", "active", "failed_deliveries"]
    list_filter = ["active", "slack"]
    inlines = [DeliveryInline]
    secret_fields = {"secret": "secret_set"}

    @admin.display(description="secret set")
    def secret_set(self, hook: Webhook) -> str:
        return self.masked(hook, "secret")

    def save_model(
        self, request: HttpRequest, obj: Webhook, form: "forms.ModelForm[Webhook]", change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if not change and form.cleaned_data.get("secret") is UNCHANGED:  # left to Corral
            messages.success(request, f"Secret for {obj}: {obj.secret}  {ONCE_SECRET}")

    @admin.display(description="failed deliveries")
    def failed_deliveries(self, hook: Webhook) -> int:
        return hook.deliveries.filter(status=Delivery.Status.FAILED).count()


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """Every delivery, its tries and its last error: failures are visible here."""

    list_display = [
        "event",
        "webhook",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event", "webhook"]
    list_select_related = ["webhook"]


@admin.register(ChangeSet)
class ChangeSetAdmin(ReadOnlyAdmin):
    list_display = ["id", "title", "status", "attempts", "created_at", "landed_at"]
    list_filter = ["status"]
    search_fields = ["title", "members__bead__id"]

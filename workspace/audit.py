"""The audit trail: every action a person takes, with who, when, what and from where.

Append-only: an entry is written once and never changed or deleted through
the ORM (its queryset refuses update() and delete(), the model refuses a
second save and a delete) nor the admin (read-only). It lives in the lowest
layer so that every layer can record: views, the flow, admin actions and
signals. A signal has no request: `RequestMiddleware` keeps the current one
in a context variable, so an entry made anywhere while a person's request is
served knows who made it and from which address.
"""

import functools
import ipaddress
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

current_request: ContextVar[HttpRequest | None] = ContextVar("corral_request", default=None)


class AppendOnly(Exception):
    """An audit entry may be added, never changed nor deleted."""


class Action(models.TextChoices):
    APPROVE = "approve", "approved a submission"
    REJECT = "reject", "rejected a submission"
    REQUEST_CHANGES = "request_changes", "requested changes on a submission"
    REVIEW_COMMENT = "review_comment", "commented on a line of a submission"
    REVERT = "revert", "asked for a revert"
    CANCEL = "cancel", "cancelled a session"
    PAUSE = "pause", "paused dispatch"
    RESUME = "resume", "resumed dispatch"
    DISPATCH = "dispatch", "ran dispatch"
    RETRY = "retry", "retried a lead queue"
    BEAD_EDIT = "bead_edit", "edited a bead"
    PLAN_EDIT = "plan_edit", "changed a plan"
    CHANGESET = "changeset", "made a change set"
    COMMENT = "comment", "commented on a bead"
    TOKEN_CREATE = "token_create", "created an agent token"
    TOKEN_ROTATE = "token_rotate", "rotated an agent token"
    API_TOKEN_CREATE = "api_token_create", "created an API token"
    API_TOKEN_ROTATE = "api_token_rotate", "rotated an API token"
    API_TOKEN_REVOKE = "api_token_revoke", "revoked an API token"
    ROLE_CHANGE = "role_change", "changed a role"
    ADMIN_EDIT = "admin_edit", "edited in the admin"
    LEARNINGS_IMPORT = "learnings_import", "approved imported learnings"
    # Corral's own: a gate's lesson that recurred (knowledge/capture.py).
    LEARNING_AUTO_APPROVE = "learning_auto", "approved a recurring gate lesson"
    PUSH_ON = "push_on", "turned pushing to the upstream on"
    PUSH_OFF = "push_off", "turned pushing to the upstream off"
    UPSTREAM_DIVERGED = "upstream_diverged", "stopped landing: the upstream was rewritten"
    UPSTREAM_REBUILD = "upstream_rebuild", "rebuilt on the upstream"
    WEBHOOK_SECRET = "webhook_secret", "made a new upstream webhook secret"


class AuditQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnly("audit entries are never changed")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnly("audit entries are never deleted")


class AuditEntry(models.Model):
    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Kept as text too: the entry outlives the account.
    actor_name = models.CharField(max_length=150, blank=True, db_index=True)
    action = models.CharField(max_length=20, choices=Action.choices, db_index=True)
    repository = models.ForeignKey(
        "workspace.Repository", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    target = models.CharField(max_length=200, blank=True, help_text="what was acted on")
    detail = models.TextField(blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["repository", "-at"])]

    def __str__(self) -> str:
        return f"{self.actor_name or 'someone'} {self.get_action_display()} {self.target}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnly("audit entries are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnly("audit entries are never deleted")


def client_ip(request: HttpRequest) -> str | None:
    """The address the request came from: REMOTE_ADDR, or, when that is a
    trusted proxy (CORRAL_TRUSTED_PROXIES), the right-most X-Forwarded-For
    address that is not one. Each proxy appends the address it was reached
    from, so everything left of the first untrusted one is the client's own
    word; without trusted proxies the header is never read."""
    remote = request.META.get("REMOTE_ADDR") or None
    proxies = proxy_networks(tuple(getattr(settings, "TRUSTED_PROXIES", ())))
    if not proxies or not trusted(remote, proxies):
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    nearest = remote
    for hop in reversed(forwarded.split(",")):
        address = ip_of(hop)
        if address is None:  # not written by a proxy of ours: the nearest known is kept
            return nearest
        if not trusted(address, proxies):
            return address
        nearest = address
    return nearest


@functools.lru_cache(maxsize=4)
def proxy_networks(networks: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in networks)


def trusted(address: str | None, proxies: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def ip_of(hop: str) -> str | None:
    """An X-Forwarded-For entry's address, without the port some proxies add."""
    text = hop.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def record(
    action: str,
    target: Any = "",
    *,
    repository: Any = None,
    detail: str = "",
    request: HttpRequest | None = None,
    actor: Any = None,
    actor_name: str = "",
) -> AuditEntry:
    """Write one entry; who and from where come from the request being served
    (or, with no person, `actor_name`: who ran a management command)."""
    request = request or current_request.get()
    if actor is None and request is not None:
        actor = getattr(request, "user", None)
    person = actor if getattr(actor, "is_authenticated", False) else None
    return AuditEntry.objects.create(
        action=action,
        actor=person,
        actor_name=person.get_username() if person else actor_name[:150],
        repository=repository,
        target=str(target)[:200],
        detail=detail,
        ip=client_ip(request) if request is not None else None,
    )


# Admin edits by model: the rest are ADMIN_EDIT.
ADMIN_ACTIONS = {
    "beads.bead": Action.BEAD_EDIT,
    "beads.dependency": Action.BEAD_EDIT,
    "beads.plan": Action.PLAN_EDIT,
    "beads.wave": Action.PLAN_EDIT,
    "beads.wavebead": Action.PLAN_EDIT,
}
ADMIN_VERBS = {1: "added", 2: "changed", 3: "deleted"}


def admin_logged(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """post_save of the admin's own LogEntry: every add, change and delete made
    in the admin, whatever the model."""
    if not created:
        return
    ct = instance.content_type
    label = f"{ct.app_label}.{ct.model}" if ct else ""
    try:
        edited = instance.get_edited_object()
    except Exception:  # deleted, or its model is gone: the entry keeps the name
        edited = None
    verb = ADMIN_VERBS.get(instance.action_flag, "edited")
    message = instance.get_change_message()
    record(
        ADMIN_ACTIONS.get(label, Action.ADMIN_EDIT),
        instance.object_repr,
        repository=getattr(edited, "repository", None) if edited is not None else None,
        detail=f"{label} {verb}" + (f": {message}" if message else ""),
        actor=instance.user,
    )


def groups_changed(
    sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, model: Any, **kwargs: Any
) -> None:
    """m2m_changed on a user's groups: a role is a group, so this is a role change."""
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    verb = {"post_add": "added to", "post_remove": "removed from", "post_clear": "removed from"}
    if reverse:  # group.user_set.add(user...): `instance` is the group
        names = [str(u) for u in model.objects.filter(pk__in=pk_set or ())]
        groups = [instance.name]
    else:
        names = [instance.get_username()]
        groups = list(model.objects.filter(pk__in=pk_set or ()).values_list("name", flat=True))
    if action == "post_clear":
        groups = groups or ["every group"]
    for name in names:
        record(Action.ROLE_CHANGE, name, detail=f"{verb[action]} {', '.join(groups)}")


class RequestMiddleware:
    """Keeps the request being served where record() can find it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)

"""People's API tokens: a person scripts Corral (CI filing beads, plans,
reviews) with a bearer token that acts as them, with their role.

A token is 256 random bits after the prefix `crp_` (an agent's are `crl_`,
a session's `crs_`: each kind is told apart before any lookup, so a person's
token never passes as an agent's). Only its SHA-256 is stored, with its last
four characters as a hint: its plain text exists once, in the answer to the
request that made or rotated it. Rotating gives the same named token a new
secret; revoking ends it. Both are conditional UPDATEs of the row as it was
read, so of two tabs revoking and rotating at once one wins and the other is
told. It lives in the lowest layer: agents/api/auth.py reads it, and
workspace/scrub.py knows its shape.
"""

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

PREFIX = "crp_"
HINT_CHARS = 4
# last_used_at is written at most this often per token: an API call is a
# read, and a script calling in a loop must not turn each into a write.
LAST_USED_EVERY = timedelta(seconds=60)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 cannot be brute-forced.
    return hashlib.sha256(token.encode()).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hint_of(secret: str) -> str:
    return secret[-HINT_CHARS:]


class PersonTokenQuerySet(models.QuerySet["PersonToken"]):
    def live(self) -> "PersonTokenQuerySet":
        return self.filter(revoked_at__isnull=True)

    def authenticate(self, token: str | None) -> Any:
        """The active person this live token belongs to, or None. Marks the
        token used (at most once a LAST_USED_EVERY)."""
        if not token or not token.startswith(PREFIX):
            return None
        found = (
            self.live()
            .filter(token_hash=hash_token(token), person__is_active=True)
            .select_related("person")
            .first()
        )
        if found is None:
            return None
        found.mark_used()
        return found.person


class PersonToken(models.Model):
    person = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="what it is for: 'CI', 'my laptop'")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=HINT_CHARS, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = PersonTokenQuerySet.as_manager()

    # Set on an instance, never stored: the token's plain text right after it
    # is made or rotated.
    plain_token: str

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["person", "name"],
                condition=Q(revoked_at__isnull=True),
                name="one_live_token_name_per_person",
            )
        ]

    def __str__(self) -> str:
        return f"{self.person}'s token {self.name}"

    @property
    def shown(self) -> str:
        """How the token is named on a page: its prefix and last characters."""
        return f"{PREFIX}…{self.hint}"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def issue(cls, person: Any, name: str) -> "PersonToken":
        """A new live token for `person`; its plain text is on `plain_token`.
        IntegrityError if the person has a live token of that name."""
        token = cls(person=person, name=name)
        token.set_secret()
        token.save()
        return token

    def set_secret(self) -> str:
        secret = new_secret()
        self.token_hash, self.hint, self.plain_token = hash_token(secret), hint_of(secret), secret
        return secret

    def rotate(self) -> bool:
        """A new secret for this live token, if it is still the one read (not
        revoked nor rotated meanwhile); the old secret stops working at once."""
        secret, now = new_secret(), timezone.now()
        rows = PersonToken.objects.live().filter(pk=self.pk, token_hash=self.token_hash)
        if not rows.update(token_hash=hash_token(secret), hint=hint_of(secret), rotated_at=now):
            self.refresh_from_db()
            return False
        self.token_hash, self.hint, self.rotated_at = hash_token(secret), hint_of(secret), now
        self.plain_token = secret
        return True

    def revoke(self) -> bool:
        """End this token, if it is still live; False if it was already revoked."""
        now = timezone.now()
        if not PersonToken.objects.live().filter(pk=self.pk).update(revoked_at=now):
            self.refresh_from_db()
            return False
        self.revoked_at = now
        return True

    def mark_used(self) -> None:
        now = timezone.now()
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
        if self.last_used_at is None or self.last_used_at < now - LAST_USED_EVERY:
            PersonToken.objects.filter(stale, pk=self.pk).update(last_used_at=now)
            self.last_used_at = now

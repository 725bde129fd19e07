"""Secrets at rest: model fields whose values are stored encrypted and never read back to people.

An agent's env (API keys), a webhook's signing secret and, later, forge tokens
are written by an admin and read only by the code that uses them (the runner,
the webhook sender). They are kept as Fernet tokens (AES-CBC with an HMAC)
under a key derived from SECRET_KEY by HKDF; SECRET_KEY_FALLBACKS (from
CORRAL_SECRET_KEYS_OLD) still open what older keys sealed, and `manage.py
reencrypt_secrets` seals everything again under the current key.

A row is loaded with its secret still sealed (`Sealed`); the secret is opened
the first time the code reads the attribute, so a page that lists agents never
decrypts, and a secret no key opens fails only where it is needed, with what
to do. Outside the model (forms, exports) a secret is only ever its sealed
form: a form starts empty and shows the stored value masked; `dumpdata`
writes the Fernet token, and `loaddata` takes it back as it is.
"""

import base64
import functools
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django import forms
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.query_utils import DeferredAttribute

# HKDF's salt and info: a key for this purpose only, never SECRET_KEY itself.
KDF_SALT = b"corral secrets at rest"
KDF_INFO = b"fernet v1"
MASK = "••••"
# A mask shows the last SHOWN_TAIL characters of a secret SHOWN_FROM long or
# more (which of several keys it is), and none of a shorter one.
SHOWN_TAIL = 4
SHOWN_FROM = 16


class SecretUnreadable(Exception):
    """A stored secret that neither SECRET_KEY nor an old key opens."""


class Sealed:
    """A secret as the database holds it (a Fernet token), not yet opened."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return "<sealed secret>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sealed) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)


class Unchanged:
    """A secret's form left empty: keep what is stored."""

    def __repr__(self) -> str:
        return "<unchanged>"


UNCHANGED = Unchanged()


def fernet_key(secret_key: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=KDF_SALT, info=KDF_INFO)
    return base64.urlsafe_b64encode(derived.derive(secret_key.encode()))


@functools.lru_cache(maxsize=8)
def keyring(secret_keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(fernet_key(key)) for key in secret_keys])


def current() -> MultiFernet:
    """The current key first (it seals), then the old ones (they only open)."""
    return keyring((settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])))


def seal(text: str) -> str:
    return current().encrypt(text.encode()).decode()


def unseal(token: str, what: str = "a secret") -> str:
    try:
        return current().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise unreadable(what) from None


def unreadable(what: str) -> SecretUnreadable:
    return SecretUnreadable(
        f"{what} cannot be decrypted with this process's SECRET_KEY: every Corral process "
        "needs the same SECRET_KEY (session workers on other machines too), and after a "
        "rotation the old one in CORRAL_SECRET_KEYS_OLD (README, Secrets); or set it again"
    )


def opens(token: str) -> bool:
    """Whether `token` is a secret some key of ours sealed."""
    try:
        current().decrypt(token.encode())
    except (InvalidToken, ValueError):
        return False
    return True


def under_current_key(token: str) -> bool:
    try:
        keyring((settings.SECRET_KEY,)).decrypt(token.encode())
    except (InvalidToken, ValueError):
        return False
    return True


def reseal(token: str, what: str = "a secret") -> str:
    """The same secret sealed under the current key."""
    try:
        return current().rotate(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise unreadable(what) from None


def mask(value: str) -> str:
    """That a secret is set, and for a long one its last characters: never what it is."""
    if not value:
        return ""
    if len(value) < SHOWN_FROM:
        return f"{MASK} (set)"
    return MASK + value[-SHOWN_TAIL:]


class SealedAttribute(DeferredAttribute):
    """The model attribute: opens a Sealed value the first time it is read."""

    def __get__(self, instance: Any, cls: Any = None) -> Any:
        if instance is None:
            return self
        value = self.stored(instance)
        if isinstance(value, Sealed):
            value = self.field.open(value, instance)  # type: ignore[attr-defined]
            instance.__dict__[self.field.attname] = value
        return value

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def stored(self, instance: Any) -> Any:
        """The value as held: Sealed as loaded, or plain as set (a deferred one loaded first)."""
        return super().__get__(instance)


class EncryptedField(models.Field):
    """A value stored as a Fernet token in a text column. Subclasses say how
    the plain value becomes text (`dump`) and back (`load`)."""

    descriptor_class = SealedAttribute

    def get_internal_type(self) -> str:
        return "TextField"

    def dump(self, value: Any) -> str:
        return str(value)

    def load(self, text: str) -> Any:
        return text

    def empty_value(self) -> Any:
        """Stored as an empty column, not sealed: a process without the key
        (a session worker elsewhere) still reads an agent that has no env."""
        return ""

    def open(self, sealed: Sealed, instance: Any) -> Any:
        if not sealed.token:
            return self.empty_value()
        what = f"{self.model._meta.label}.{self.name} (row {instance.pk})"
        return self.load(unseal(sealed.token, what))

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return None
        return Sealed(value) if value else self.empty_value()

    def to_python(self, value: Any) -> Any:
        """Text given to the field from outside (an export being loaded) is its sealed form."""
        if isinstance(value, str):
            return Sealed(value) if value else self.empty_value()
        return value

    def clean(self, value: Any, model_instance: Any) -> Any:
        # The attribute holds the plain value: validate it as it is (to_python
        # would take it for a sealed one).
        self.validate(value, model_instance)
        self.run_validators(value)
        return value

    def get_prep_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, Sealed):
            return value.token
        if value == self.empty_value():
            return ""
        return seal(self.dump(value))

    def held(self, obj: Any) -> Any:
        """The value as the instance holds it, opened or not."""
        return SealedAttribute(self).stored(obj)

    def pre_save(self, model_instance: Any, add: bool) -> Any:
        # As held: a secret nobody read is saved sealed as it was, never opened.
        return self.held(model_instance)

    def value_from_object(self, obj: Any) -> Any:
        """What forms and exports see: the sealed form only."""
        value = self.held(obj)
        if value is None or isinstance(value, Sealed):
            return value
        return Sealed(self.get_prep_value(value))

    def value_to_string(self, obj: Any) -> Any:
        value = self.value_from_object(obj)
        return None if value is None else value.token

    def opened(self, obj: Any) -> Any:
        """The plain value, or None when no key opens it (for masked displays)."""
        try:
            return getattr(obj, self.attname)
        except SecretUnreadable:
            return None

    def shown(self, obj: Any) -> str:
        value = self.opened(obj)
        if value is None:
            return "unreadable: set it again (see README, Secrets)"
        return mask(value) or "not set"


class EncryptedTextField(EncryptedField):
    """A secret string: a webhook's signing secret, a forge token."""

    def formfield(self, **kwargs: Any) -> forms.Field:  # type: ignore[override]
        defaults: dict[str, Any] = {
            "label": self.verbose_name.capitalize(),
            "help_text": self.help_text,
            "max_length": self.max_length,
        }
        return SecretTextFormField(**(defaults | kwargs))

    def save_form_data(self, instance: Any, data: Any) -> None:
        if data is not UNCHANGED:
            setattr(instance, self.name, data)


class EncryptedJSONField(EncryptedField):
    """A JSON object of secrets, e.g. an agent's env: names shown, values masked."""

    def dump(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True)

    def load(self, text: str) -> Any:
        return json.loads(text)

    def empty_value(self) -> Any:
        return {}

    def formfield(self, **kwargs: Any) -> forms.Field:  # type: ignore[override]
        defaults: dict[str, Any] = {"label": self.verbose_name.capitalize()}
        return SecretJSONFormField(**(defaults | kwargs))

    def save_form_data(self, instance: Any, data: Any) -> None:
        """A form gives changes, key by key: a value sets or replaces, None removes."""
        if data is UNCHANGED:
            return
        # One no key opens is lost already: the keys given are what is left.
        merged = dict(self.opened(instance) or {})
        for key, value in data.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        setattr(instance, self.name, merged)

    def shown(self, obj: Any) -> str:
        value = self.opened(obj)
        if value is None:
            return "unreadable: set every key again (see README, Secrets)"
        if not value:
            return "none set"
        return ", ".join(f"{key} {mask(str(v))}" for key, v in sorted(value.items()))


# Forms: the input starts empty whatever is stored; left empty, it keeps it.


class SecretInput(forms.TextInput):
    def __init__(self) -> None:
        # Not a password field: a browser would fill in the person's own password.
        super().__init__(attrs={"autocomplete": "off", "spellcheck": "false", "size": 60})


class SecretTextFormField(forms.CharField):
    widget = SecretInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("initial", None)
        help_text = kwargs.pop("help_text", "")
        note = "Stored encrypted and never shown again: leave empty to keep it, type to replace it."
        help_text = f"{help_text.rstrip('.')}. {note}" if help_text else note
        super().__init__(required=False, help_text=help_text, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return "" if isinstance(value, Sealed) else value

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        return text if text else UNCHANGED

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool(data)


class SecretJSONFormField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"})
    help = (
        'Changes as a JSON object: {"NAME": "value"} sets or replaces a key, '
        '{"NAME": null} removes one; keys left out, and an empty box, keep their values. '
        "Values are stored encrypted and never shown again."
    )

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("initial", None)
        kwargs.pop("max_length", None)
        kwargs["help_text"] = self.help
        super().__init__(required=False, **kwargs)

    def prepare_value(self, value: Any) -> Any:
        return "" if isinstance(value, Sealed) else value

    def clean(self, value: Any) -> Any:
        text = (super().clean(value) or "").strip()
        if not text:
            return UNCHANGED
        try:
            changes = json.loads(text)
        except ValueError as e:
            raise ValidationError(f"Not JSON: {e}") from None
        if not isinstance(changes, dict) or not all(
            isinstance(v, str) or v is None for v in changes.values()
        ):
            raise ValidationError("Give an object whose values are strings (or null to remove).")
        return changes

    def has_changed(self, initial: Any, data: Any) -> bool:
        return bool((data or "").strip())


# Rotation: everything sealed again under the current SECRET_KEY.


def secret_fields() -> list[EncryptedField]:
    return [
        field
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedField)
    ]


def reseal_all() -> tuple[int, int, list[str]]:
    """Seal every stored secret under the current key: (resealed, already
    current, what no key opens). Each row by a conditional UPDATE of the token
    read, so a secret saved meanwhile is left as saved."""
    resealed, current_already, unreadable_rows = 0, 0, []
    for field in secret_fields():
        model = field.model
        rows = model._default_manager.exclude(**{field.attname: None})
        for pk, value in rows.values_list("pk", field.attname).iterator():
            if not isinstance(value, Sealed):
                continue  # empty: nothing sealed
            if under_current_key(value.token):
                current_already += 1
                continue
            what = f"{model._meta.label}.{field.name} (row {pk})"
            try:
                token = reseal(value.token, what)
            except SecretUnreadable:
                unreadable_rows.append(what)
                continue
            same = model._default_manager.filter(pk=pk, **{field.attname: value})
            resealed += same.update(**{field.attname: Sealed(token)})
    return resealed, current_already, unreadable_rows

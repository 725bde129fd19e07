from typing import Any

from django.core.management.base import BaseCommand, CommandError

from workspace import secrets


class Command(BaseCommand):
    help = (
        "Seal every stored secret (agents' env, webhooks' secrets) again under the current "
        "SECRET_KEY, after a rotation; then CORRAL_SECRET_KEYS_OLD can be emptied."
    )

    def handle(self, *args: Any, **opts: Any) -> None:
        resealed, current, unreadable = secrets.reseal_all()
        self.stdout.write(
            f"Re-encrypted {resealed} secret(s); {current} already under the current key."
        )
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} secret(s) no key opens ({', '.join(unreadable)}): put the key "
                "they were saved under in CORRAL_SECRET_KEYS_OLD, or set them again"
            )

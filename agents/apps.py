from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from agents.dispatch import bead_added
        from agents.flow import tell_blocked
        from beads import signals
        from beads.models import Bead

        post_save.connect(bead_added, sender=Bead, dispatch_uid="dispatch-on-new-bead")
        signals.blocked.connect(tell_blocked, sender=Bead, dispatch_uid="webhooks-on-blocked")

from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from agents.jobs.dispatch import bead_added
        from agents.moves.notifications import tell_blocked, tell_finished_plans
        from agents.reports import review_capacity
        from beads import hook, signals
        from beads.models import Bead

        hook.hold_back(review_capacity.HOLD)
        post_save.connect(bead_added, sender=Bead, dispatch_uid="dispatch-on-new-bead")
        signals.blocked.connect(tell_blocked, sender=Bead, dispatch_uid="webhooks-on-blocked")
        signals.closed.connect(tell_finished_plans, sender=Bead, dispatch_uid="webhooks-on-closed")

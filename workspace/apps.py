from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_migrate, post_save


class WorkspaceConfig(AppConfig):
    name = "workspace"
    verbose_name = "Workspace registry"

    def ready(self) -> None:
        from django.contrib.admin.models import LogEntry
        from django.contrib.auth import get_user_model

        from workspace import audit, roles

        # After every migrate (and a test's flush) the role groups get the
        # permissions made meanwhile.
        post_migrate.connect(roles.after_migrate, dispatch_uid="corral-roles")
        # The audit trail hears of every admin edit and every role change.
        post_save.connect(audit.admin_logged, sender=LogEntry, dispatch_uid="corral-audit-admin")
        m2m_changed.connect(
            audit.groups_changed,
            sender=get_user_model().groups.through,
            dispatch_uid="corral-audit-roles",
        )

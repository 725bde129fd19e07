from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WorkspaceConfig(AppConfig):
    name = "workspace"
    verbose_name = "Workspace registry"

    def ready(self) -> None:
        from workspace import roles

        # After every migrate (and a test's flush) the role groups get the
        # permissions made meanwhile.
        post_migrate.connect(roles.after_migrate, dispatch_uid="corral-roles")

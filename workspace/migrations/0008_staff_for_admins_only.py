"""Staff status (the admin site) for admins only: viewers and operators made
staff by the old roles.assign lose it. Admins, superusers and accounts in no
role group keep what they have."""

from django.conf import settings
from django.db import migrations

from workspace import roles


def staff_for_admins_only(apps, schema_editor):
    app_label, model_name = settings.AUTH_USER_MODEL.split(".")
    User = apps.get_model(app_label, model_name)
    users = User.objects.using(schema_editor.connection.alias)
    dashboard_only = users.filter(
        is_staff=True, is_superuser=False, groups__name__in=[roles.VIEWER, roles.OPERATOR]
    ).exclude(groups__name=roles.ADMIN)
    users.filter(pk__in=list(dashboard_only.values_list("pk", flat=True))).update(is_staff=False)


class Migration(migrations.Migration):

    dependencies = [
        ("workspace", "0007_audit_actions"),
        ("agents", "0006_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    # Not undone: which of them were staff before is not known.
    operations = [migrations.RunPython(staff_for_admins_only, migrations.RunPython.noop)]

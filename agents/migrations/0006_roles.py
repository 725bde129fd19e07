"""The three roles as groups: viewer, operator, admin (see workspace/roles.py).

Django makes permissions only after every migration has run, so this makes
those of Corral's apps first, then the groups. `manage.py migrate` keeps the
groups in step afterwards (workspace's post_migrate handler)."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from workspace import roles

APPS = ("auth", "workspace", "beads", "agents", "knowledge")


def make_roles(apps, schema_editor):
    using = schema_editor.connection.alias
    for label in APPS:
        config = apps.get_app_config(label)
        config.models_module = True  # a migration state's app has none; create_permissions asks
        create_permissions(config, apps=apps, verbosity=0, using=using)
    roles.sync_groups(apps, using)


def drop_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=roles.ROLES).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0005_permissions"),
        ("beads", "0004_permissions"),
        ("workspace", "0004_permissions"),
        ("knowledge", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(make_roles, drop_roles)]

"""The demo agent moved from agents/ to the client package: agents whose
command runs it by its old module path run it by the new one."""

from django.db import migrations

OLD, NEW = "agents.demo_agent", "corral_client.demo_agent"


def rename(apps, schema_editor, old=OLD, new=NEW):
    Agent = apps.get_model("agents", "Agent")
    for agent in Agent.objects.all():
        command = agent.command
        if isinstance(command, list) and old in command:
            agent.command = [new if arg == old else arg for arg in command]
            agent.save(update_fields=["command"])


def rename_back(apps, schema_editor):
    rename(apps, schema_editor, old=NEW, new=OLD)


class Migration(migrations.Migration):
    dependencies = [("agents", "0013_usage_agent_and_repository_required")]

    operations = [migrations.RunPython(rename, rename_back)]

"""Usage rows carry their session's agent and its bead's repository (the usage
page sums them without joining each row to its session and bead): added empty,
then filled here. Made required in 0013, in a transaction of its own:
PostgreSQL refuses to alter a table with this one's deferred FK checks pending."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def fill(apps, schema_editor):
    TokenUsage = apps.get_model("agents", "TokenUsage")
    Session = apps.get_model("agents", "Session")
    session = Session.objects.filter(pk=OuterRef("session_id"))
    TokenUsage.objects.update(
        agent_id=Subquery(session.values("agent_id")[:1]),
        repository_id=Subquery(session.values("bead__repository_id")[:1]),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0011_page_indexes"),
        ("workspace", "0007_audit_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="tokenusage",
            name="agent",
            field=models.ForeignKey(
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="agents.agent",
            ),
        ),
        migrations.AddField(
            model_name="tokenusage",
            name="repository",
            field=models.ForeignKey(
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="workspace.repository",
            ),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]

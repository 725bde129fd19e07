import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0012_usage_agent_and_repository"),
    ]

    operations = [
        migrations.AlterField(
            model_name="tokenusage",
            name="agent",
            field=models.ForeignKey(
                editable=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="agents.agent",
            ),
        ),
        migrations.AlterField(
            model_name="tokenusage",
            name="repository",
            field=models.ForeignKey(
                editable=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="workspace.repository",
            ),
        ),
    ]

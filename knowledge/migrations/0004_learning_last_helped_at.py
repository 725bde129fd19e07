import django.utils.timezone
from django.db import migrations, models
from django.db.models import Max

from knowledge import fts


def from_the_evidence(apps, schema_editor):
    """Until now a confirmation (a landing, a helpful mark) was the only thing
    that moved confirmed_at after creation: a learning confirmed at least once
    last helped then. The last harmful mark comes from the marks kept."""
    Learning = apps.get_model("knowledge", "Learning")
    Mark = apps.get_model("knowledge", "Mark")
    Learning.objects.filter(helpful__gt=0).update(last_helped_at=models.F("confirmed_at"))
    hurt = Mark.objects.filter(helpful=False).values("learning").annotate(at=Max("created_at"))
    for row in hurt.order_by():
        Learning.objects.filter(pk=row["learning"]).update(last_hurt_at=row["at"])


class Migration(migrations.Migration):

    dependencies = [
        ('knowledge', '0003_marks'),
    ]

    operations = [
        migrations.AlterField(
            model_name='learning',
            name='confirmed_at',
            field=models.DateTimeField(default=django.utils.timezone.now, help_text="created or last confirmed (imported: the file's date)"),
        ),
        migrations.AddField(
            model_name='learning',
            name='last_helped_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='learning',
            name='last_hurt_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(from_the_evidence, migrations.RunPython.noop),
        # AlterField remakes knowledge_learning on SQLite, dropping the FTS triggers.
        migrations.RunPython(fts.install, migrations.RunPython.noop),
    ]

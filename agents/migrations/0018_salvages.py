"""Salvages: the work of sessions that ended without handing in (where it is
kept, how much, why they stopped); and the agent CLI's own conversation id
of each session, for the next session of the same agent to resume."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0017_rate_limit_pauses'),
        ('beads', '0010_landed_and_repository_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='session',
            name='cli_session',
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.CreateModel(
            name='Salvage',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('stopped', models.CharField(choices=[('claimed', 'Claimed'), ('queued', 'Queued'), ('running', 'Running'), ('submitted', 'Submitted'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('timed_out', 'timed out'), ('out_of_scope', 'out of scope'), ('cancelled', 'Cancelled'), ('lost', 'Lost')], max_length=20)),
                ('why', models.TextField(blank=True)),
                ('ref', models.CharField(blank=True, max_length=300)),
                ('sha', models.CharField(blank=True, max_length=64)),
                ('base_sha', models.CharField(blank=True, max_length=64)),
                ('files', models.JSONField(blank=True, default=list)),
                ('lines', models.PositiveIntegerField(default=0)),
                ('summary', models.JSONField(blank=True, default=dict)),
                ('left_out', models.JSONField(blank=True, default=list)),
                ('note', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('bead', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='salvages', to='beads.bead')),
                ('session', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='salvage', to='agents.session')),
            ],
            options={
                'ordering': ['-created_at', '-pk'],
                'indexes': [models.Index(fields=['bead', 'created_at'], name='agents_salv_bead_id_32ebf2_idx')],
            },
        ),
    ]

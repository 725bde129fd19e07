"""Agents' env and webhooks' secrets stored encrypted (workspace/secrets.py):
the columns become text, then every value stored before is sealed in place."""

import agents.models.webhooks
import workspace.secrets
from django.db import migrations
from django.db.models import TextField, Value
from django.db.models.functions import Cast

from workspace import secrets

SECRET_FIELDS = [("agents", "Agent", "env"), ("agents", "Webhook", "secret")]


def stored_values(Model, field, using):
    """(pk, the column's text) of every row, past the field's decryption."""
    rows = Model.objects.using(using).annotate(stored=Cast(field, TextField()))
    return list(rows.exclude(stored=None).values_list("pk", "stored"))


def encrypt_existing(apps, schema_editor):
    using = schema_editor.connection.alias
    for label, name, field in SECRET_FIELDS:
        Model = apps.get_model(label, name)
        load = Model._meta.get_field(field).load
        for pk, stored in stored_values(Model, field, using):
            if not stored or secrets.opens(stored):
                continue  # empty, or sealed already
            same = Model.objects.using(using).annotate(stored=Cast(field, TextField()))
            same.filter(pk=pk, stored=stored).update(**{field: load(stored)})


def decrypt_existing(apps, schema_editor):
    using = schema_editor.connection.alias
    for label, name, field in SECRET_FIELDS:
        Model = apps.get_model(label, name)
        secret = Model._meta.get_field(field)
        empty = secret.dump(secret.empty_value())
        for pk, stored in stored_values(Model, field, using):
            text = secrets.unseal(stored) if stored else empty
            plain = Value(text, output_field=TextField())
            Model.objects.using(using).filter(pk=pk).update(**{field: plain})


class Migration(migrations.Migration):

    dependencies = [
        ("agents", "0014_demo_agent_moved"),
    ]

    operations = [
        migrations.AlterField(
            model_name="agent",
            name="env",
            field=workspace.secrets.EncryptedJSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="webhook",
            name="secret",
            field=workspace.secrets.EncryptedTextField(
                default=agents.models.webhooks.new_secret,
                help_text="signs each body (HMAC-SHA256)",
                max_length=200,
            ),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing),
    ]

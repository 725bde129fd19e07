from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0015_encrypt_secrets"),
    ]

    operations = [
        migrations.AddField(
            model_name="session",
            name="log_held",
            field=models.TextField(blank=True, editable=False),
        ),
    ]

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("intake", "0002_bulk_intake"),
    ]

    operations = [
        migrations.AddField(
            model_name="seenresourceversion",
            name="batch",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="seen_versions",
                to="intake.bulkbatch",
            ),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("intake", "0003_seen_version_batch"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="ingestjob",
            index=models.Index(fields=["organization", "patient_key_sha256"], name="ingestjob_org_patient"),
        ),
    ]

"""How each decision's signer was authenticated: ``signature_method`` and ``authenticated_at``.

Every decision before this migration was signed with the clinician's password in the review UI or came
from CDS Hooks feedback; the feedback ones cannot be told apart without opening sealed payloads, so all
existing rows say "password" (the CDS Hooks comment in their sealed payload still says how they came).
``authenticated_at`` stays empty for them.

No row is updated: on PostgreSQL the column is added with a default (a catalogue change, no UPDATE, so
the immutability trigger of 0002 does not fire) that is then dropped. SQLite cannot add a NOT NULL column
in place, so Django rebuilds the table, copying the rows with the default, and the rebuilt table has
lost 0002's trigger: it is created again here, after the change and after its reversal.
"""

from django.db import migrations, models

# Frozen copy of 0002's SQLite trigger (PostgreSQL's survives ALTER TABLE).
SQLITE_CREATE = [
    "DROP TRIGGER IF EXISTS review_decision_no_update",
    """
CREATE TRIGGER review_decision_no_update BEFORE UPDATE ON review_decision
BEGIN
    SELECT RAISE(ABORT, 'review_decision is immutable');
END
""",
]


def _trigger_again(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_CREATE:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("review", "0003_suggestion_completeness"),
    ]

    operations = [
        # Reversed last: the trigger back on the table SQLite rebuilt to drop the columns.
        migrations.RunPython(migrations.RunPython.noop, _trigger_again),
        migrations.AddField(
            model_name="decision",
            name="signature_method",
            field=models.CharField(
                choices=[
                    ("password", "Password typed when signing"),
                    ("oidc-step-up", "Signed in again with the hospital login"),
                    ("cds-hooks-feedback", "Accepted in the EHR (the EHR vouched for the user)"),
                ],
                default="password",
                max_length=32,
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="decision",
            name="authenticated_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(_trigger_again, migrations.RunPython.noop),
    ]

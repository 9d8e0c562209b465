"""Retention purges, and append-only on SQLite too.

- The chain head gains the chain's start (``first_seq``, ``first_prev_hash``), which a retention purge moves.
- Indexes for newest-first searches by organization and by actor.
- ``audit_purgepermit``: one row, ``below_seq`` = 0. The append-only triggers let a DELETE through only for
  rows with ``seq < below_seq``; ``audit_purge`` opens it inside its own transaction and closes it again
  before committing. The table is not managed by Django, so database flushes (tests) leave it alone.
- PostgreSQL: the trigger function of 0002 now honours the permit for DELETE. UPDATE is still refused.
- SQLite: triggers that refuse UPDATE, and DELETE unless the permit allows it.

The SQL is kept here, frozen with the migration, rather than imported from application code.
"""

from django.db import migrations, models

GENESIS_HASH = "0" * 64

# One statement per string: SQLite's cursor runs one at a time.
PERMIT_TABLE = {
    "postgresql": [
        """
CREATE TABLE IF NOT EXISTS audit_purgepermit (
    id smallint PRIMARY KEY CHECK (id = 1),
    below_seq bigint NOT NULL DEFAULT 0 CHECK (below_seq >= 0)
)
""",
        "INSERT INTO audit_purgepermit (id, below_seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    ],
    "sqlite": [
        """
CREATE TABLE IF NOT EXISTS audit_purgepermit (
    id integer NOT NULL PRIMARY KEY CHECK (id = 1),
    below_seq bigint NOT NULL DEFAULT 0 CHECK (below_seq >= 0)
)
""",
        "INSERT OR IGNORE INTO audit_purgepermit (id, below_seq) VALUES (1, 0)",
    ],
}

POSTGRESQL_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND OLD.seq < COALESCE((SELECT below_seq FROM audit_purgepermit WHERE id = 1), 0) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

# 0002's function, restored on the way back.
POSTGRESQL_FUNCTION_0002 = """
CREATE OR REPLACE FUNCTION audit_auditevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""

SQLITE_TRIGGERS = [
    "DROP TRIGGER IF EXISTS audit_auditevent_no_update",
    """
CREATE TRIGGER audit_auditevent_no_update BEFORE UPDATE ON audit_auditevent
BEGIN
    SELECT RAISE(ABORT, 'audit_auditevent is append-only');
END
""",
    "DROP TRIGGER IF EXISTS audit_auditevent_no_delete",
    """
CREATE TRIGGER audit_auditevent_no_delete BEFORE DELETE ON audit_auditevent
WHEN OLD.seq >= COALESCE((SELECT below_seq FROM audit_purgepermit WHERE id = 1), 0)
BEGIN
    SELECT RAISE(ABORT, 'audit_auditevent is append-only');
END
""",
]


def _forward(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    if vendor not in PERMIT_TABLE:
        raise RuntimeError(f"the audit log supports PostgreSQL and SQLite, not {vendor}")
    with schema_editor.connection.cursor() as cursor:
        for statement in PERMIT_TABLE[vendor]:
            cursor.execute(statement)
        if vendor == "postgresql":
            cursor.execute(POSTGRESQL_FUNCTION)  # no placeholders: the % is PL/pgSQL's
        else:
            for statement in SQLITE_TRIGGERS:
                cursor.execute(statement)


def _backward(apps, schema_editor):  # type: ignore[no-untyped-def]
    vendor = schema_editor.connection.vendor
    with schema_editor.connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(POSTGRESQL_FUNCTION_0002)
        elif vendor == "sqlite":
            cursor.execute("DROP TRIGGER IF EXISTS audit_auditevent_no_update")
            cursor.execute("DROP TRIGGER IF EXISTS audit_auditevent_no_delete")
        cursor.execute("DROP TABLE IF EXISTS audit_purgepermit")


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]

    operations = [
        migrations.AddField(
            model_name="auditchainhead",
            name="first_seq",
            field=models.PositiveBigIntegerField(default=1),
        ),
        migrations.AddField(
            model_name="auditchainhead",
            name="first_prev_hash",
            field=models.CharField(default=GENESIS_HASH, max_length=64),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["organization", "seq"], name="audit_event_org_seq"),
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(fields=["actor_id", "seq"], name="audit_event_actor_seq"),
        ),
        migrations.CreateModel(
            name="AuditPurgePermit",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("below_seq", models.PositiveBigIntegerField(default=0)),
            ],
            options={"db_table": "audit_purgepermit", "managed": False},
        ),
        migrations.RunPython(_forward, _backward),
    ]

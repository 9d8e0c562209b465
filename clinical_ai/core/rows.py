"""Inserting many rows of one model fast: on PostgreSQL one ``INSERT ... SELECT FROM unnest(...)`` per batch,
each column sent as one array parameter, instead of Django's ``bulk_create``, which compiles every value of
every row into its SQL in Python (for a de-identification job's 20,000 rows that compilation cost more than
the database's own work). Other databases use ``bulk_create``.

The rows are saved as ``bulk_create`` would save them (defaults filled in, ``auto_now_add`` stamped, each
value prepared by its field) but their primary keys are not read back: use it where nothing reads ``pk``
after the insert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router

BATCH_ROWS = 5000


def rows_insert(
    model: type[models.Model],
    rows: Sequence[models.Model],
    *,
    ignore_conflicts: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> None:
    """Insert ``rows`` (instances of ``model``, not yet saved). ``ignore_conflicts``: a row that would break
    a unique constraint is skipped (``ON CONFLICT DO NOTHING``), as with ``bulk_create``."""
    if not rows:
        return
    alias = router.db_for_write(model)
    connection = connections[alias]
    if connection.vendor != "postgresql":
        model._default_manager.using(alias).bulk_create(
            rows, batch_size=500, ignore_conflicts=ignore_conflicts
        )
        return
    meta = model._meta
    fields = [f for f in meta.concrete_fields if not (f.primary_key and isinstance(f, models.AutoField))]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    arrays = ", ".join(f"%s::{f.db_type(connection)}[]" for f in fields)
    # Only the model's own table, column names and column types go into the SQL; every value is a parameter.
    table = connection.ops.quote_name(meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({arrays})"  # noqa: S608
    if ignore_conflicts:
        sql += " ON CONFLICT DO NOTHING"
    for start in range(0, len(rows), batch_rows):
        batch = rows[start : start + batch_rows]
        values: list[list[Any]] = [[] for _ in fields]
        for row in batch:
            for column, field in zip(values, fields, strict=True):
                column.append(field.get_db_prep_save(field.pre_save(row, True), connection))
        with connection.cursor() as cursor:
            cursor.execute(sql, values)

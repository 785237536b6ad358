"""PostgreSQL: trigram indexes for the worklist's search by MRN or name.

The search is ``icontains`` (``UPPER(mrn::text) LIKE UPPER('%…%')``), which no B-tree index
serves: at 100,000 patients it read the whole patient table (bench/pages.py). A GIN trigram
index on the same expression turns it into an index lookup for any term of 3 characters or
more. pg_trgm ships with PostgreSQL and is a trusted extension (13+), so a database owner can
create it; where that is refused, the search still works, by scanning, and this says so.
SQLite has no such index and scans (it is the embedded, single-clinic database).
"""

from django.db import DatabaseError, migrations, transaction

INDEXES = {
    "patient_mrn_trgm_idx": "mrn",
    "patient_name_trgm_idx": "name",
}


def trigram_indexes_create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError as refused:  # not allowed to create it: the search scans instead
        print(f"\n  pg_trgm not available ({refused}); patient search will scan the table.")
        return
    with connection.cursor() as cursor:
        for name, column in INDEXES.items():
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {name} ON pathways_patient "
                f"USING gin (UPPER({column}::text) gin_trgm_ops)"
            )


def trigram_indexes_drop(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for name in INDEXES:
            cursor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("pathways", "0019_snapshot_snooze_ends"),
    ]

    operations = [migrations.RunPython(trigram_indexes_create, trigram_indexes_drop)]

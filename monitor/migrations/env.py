"""Alembic environment: always handed a live connection by monitor.migrations.upgrade."""

from alembic import context

from monitor.storage.schema import include_in_schema_comparison, metadata

connection = context.config.attributes["connection"]
# The FTS5 search index (migration 0005) is not described by metadata; keep it out of comparisons.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  include_object=include_in_schema_comparison)
with context.begin_transaction():
    context.run_migrations()

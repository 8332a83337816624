"""Alembic environment: `rlhf.label.db.migrate` passes the connection in."""

from alembic import context

from rlhf.label.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through rlhf.label.db.migrate (or `rlhf label serve`), which passes a connection")

# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

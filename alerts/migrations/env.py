"""Alembic environment of the ticket database.

Run by :func:`alerts.tickets.upgrade_schema`, which passes an open connection in
``config.attributes["connection"]``; there is no alembic.ini and no logging setup here, so the
application's logging stays as it is.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import alerts.paging  # registers the escalations and notifications tables)
import alerts.silences  # noqa: F401  (registers the silences table in metadata)
from alerts.tickets import metadata

config = context.config
connection = config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the ticket migrations through alerts.tickets.upgrade_schema")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

"""Alembic environment: runs on the connection ``gate.service.db.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from gate.service.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through gate.service.db.migrate
    raise RuntimeError("run migrations through gate.service.db.migrate(settings)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

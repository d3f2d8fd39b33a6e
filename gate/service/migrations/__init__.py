"""Alembic migrations of the service database (run by ``gate serve`` at start)."""

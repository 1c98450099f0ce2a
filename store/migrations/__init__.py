"""Alembic migrations of the records database (run them with ``codexflow db upgrade``)."""

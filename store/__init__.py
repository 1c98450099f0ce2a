"""Records: SQLAlchemy models, the engine, Alembic migrations, and the session event log."""

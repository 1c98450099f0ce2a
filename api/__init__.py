"""The HTTP API: a thin FastAPI layer over Temporal and the database; it never runs agents or codex."""

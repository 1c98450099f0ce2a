"""All I/O: the codex runner, workspaces (git), and database records."""

"""What tests share, imported by test modules and conftests alike (never a test module itself):
processes and polling, Temporal, the real codex, the API, pipelines, chats, metrics, deploy files."""

"""Test helpers for codexflow, offline stand-ins for the outside world.

- ``devkit.responses_server``: a scripted OpenAI-compatible Responses API server that plays the
  LLM for both the real codex binary and the openai / openai-agents clients.
- ``devkit/fake_codex.py``: an executable fake ``codex`` CLI steered by ``@fake`` prompt lines.

Nothing is imported here, so ``python -m devkit.responses_server`` runs cleanly.
"""

__all__ = ["fake_codex", "responses_server"]

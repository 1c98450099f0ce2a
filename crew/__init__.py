"""The four roles: instructions, codex prompt templates, output types, and which tools each gets."""

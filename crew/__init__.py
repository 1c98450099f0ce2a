"""The four roles: their instructions, the markers their prompts use, and the reports they return."""

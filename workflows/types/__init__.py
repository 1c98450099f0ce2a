"""The types at the boundaries of workflows, activities and the API, one module per family.

Workflows, activities, the API and the CLI all import these (and nothing else of each other's
to exchange data): ``codex`` (codex tasks), ``workspace`` (checkpoints and the agents' tool
inputs), ``pipeline`` (a session's input, options, status and result), ``review`` (human
reviews), ``chat`` (one role's chat) and ``records`` (what the record activities write).
"""

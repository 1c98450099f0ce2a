"""The markers that structure what an agent reads, and how to read them back.

The role instructions start with ``ROLE: <role>`` and every stage input with
``STAGE: <role> #<iteration>``; a repair stage lists ``ISSUES TO FIX``. The prompts are rendered
with these constants, and the scripted models that play the agents in tests and offline
(``devkit``) read requests with the parsers below, so the two can't drift apart.
"""

from __future__ import annotations

import re

__all__ = [
    "CURRENT_STEP",
    "ISSUES_TO_FIX",
    "PREVIOUS_STAGES",
    "REPOSITORY",
    "REVIEWER_FEEDBACK",
    "USER_REQUEST",
    "YOUR_TASK",
    "current_step_in",
    "issues_in",
    "role_in",
    "role_line",
    "stage_in",
    "stage_line",
]

USER_REQUEST = "USER REQUEST:"
PREVIOUS_STAGES = "PREVIOUS STAGES (oldest first):"
ISSUES_TO_FIX = "ISSUES TO FIX:"
REVIEWER_FEEDBACK = "REVIEWER FEEDBACK (address it in this attempt):"
YOUR_TASK = "YOUR TASK:"
REPOSITORY = "REPOSITORY OVERVIEW:"
CURRENT_STEP = "CURRENT STEP:"  # how a Builder's codex prompt names its step

_ROLE = re.compile(r"^\s*ROLE:\s*(\w+)", re.MULTILINE)
_STAGE = re.compile(r"STAGE: (\w+) #(\d+)")
_CURRENT_STEP = re.compile(rf"^{CURRENT_STEP}(.*)$", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*]|\d+[.)])\s+(.*)$")


def role_line(role: str) -> str:
    return f"ROLE: {role}"


def stage_line(role: str, iteration: int) -> str:
    return f"STAGE: {role} #{iteration}"


def role_in(instructions: str) -> str | None:
    """The role named by ``ROLE:`` in an agent's instructions."""
    match = _ROLE.search(instructions)
    return match[1] if match else None


def stage_in(text: str, role: str | None = None) -> tuple[str, int] | None:
    """The ``(role, iteration)`` of the ``STAGE:`` line naming ``role`` (or the first one)."""
    stages = [(name, int(number)) for name, number in _STAGE.findall(text)]
    for stage in stages:
        if stage[0] == role:
            return stage
    return stages[0] if stages else None


def current_step_in(prompt: str) -> str | None:
    match = _CURRENT_STEP.search(prompt)
    return match[1] if match else None


def issues_in(text: str, limit: int = 20) -> list[str]:
    """The items (``1. ...`` or ``- ...``) listed under ``ISSUES TO FIX`` (none if not there)."""
    if ISSUES_TO_FIX not in text:
        return []
    after = text.split(ISSUES_TO_FIX, 1)[1].splitlines()[1:]
    issues: list[str] = []
    for line in after:
        if item := _LIST_ITEM.match(line):
            issues.append(item[1].strip())
        elif issues and line.strip() and line[:1].isspace():  # an indented continuation line
            issues[-1] = f"{issues[-1]} {line.strip()}"
        elif issues or line.strip():
            break
    return issues[:limit]

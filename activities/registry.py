"""Every activity a worker registers, bound to its settings and the records database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from activities.codex import CodexRunner
from activities.records import RecordActivities, Recorder
from activities.repositories import RepositoryActivities
from activities.tools import AgentTools
from activities.workspace import WorkspaceActivities
from config import Settings

__all__ = ["worker_activities"]


def worker_activities(
    settings: Settings, engine: AsyncEngine, host_queue: str
) -> list[Callable[..., Any]]:
    """The ``@activity.defn`` methods of each activity class, bound to one instance each
    (``host_queue``: this machine's task queue, which the worktrees made here are reached by)."""
    recorder = Recorder(engine, settings.repos_path())
    instances = (
        CodexRunner(settings, recorder),
        WorkspaceActivities(settings),
        AgentTools(settings, recorder),
        RecordActivities(recorder),
        RepositoryActivities(settings, recorder, host_queue),
    )
    return [
        getattr(instance, name)
        for instance in instances
        for name, member in vars(type(instance)).items()
        if hasattr(member, "__temporal_activity_definition")
    ]

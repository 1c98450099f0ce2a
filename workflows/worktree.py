"""A session's (or a chat's) worktree, from its workflow: which host holds it, the activities that
touch it sent there, and a move to another host when that one is lost.

The worktree is made by ``prepare_worktree`` on the shared task queue, so any live host takes it;
the answer names the host and its own task queue (``<queue>@<host>``, as in Temporal's
worker-specific task queues sample). Everything that reads or writes the worktree's files (codex,
checkpoints, the agents' workspace tools) then runs on that queue, with a schedule-to-start
timeout: a host that stops answering leaves its queue unpolled, the timeout fires, and the
worktree is prepared again on the shared queue. Another host rebuilds it from the branch's last
checkpoint (every checkpoint is published to the central repository), the call is made again
there, and the move is reported (an event in the session's log, the Web UI's details).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType

with workflow.unsafe.imports_passed_through():
    from activities.repositories import RepositoryActivities
    from core.vocabulary import SessionMoved
    from workflows.types.repository import Worktree, WorktreeInput

__all__ = ["HostCall", "SessionWorktree", "host_lost"]

T = TypeVar("T")

_PREPARE_TIMEOUT = timedelta(minutes=30)  # a checkout of a big repository takes a while
_RETRY = RetryPolicy(maximum_attempts=5)


def host_lost(err: BaseException) -> bool:
    """Whether an activity failed because no worker of its host's queue picked it up in time."""
    cause = err.cause if isinstance(err, ActivityError) else None
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START


@dataclass(frozen=True)
class HostCall:
    """What an activity call on the worktree needs: where the worktree is now, and the
    ``execute_activity`` options that send it to the host holding it."""

    worktree: Worktree
    options: dict[str, Any]

    @property
    def path(self) -> str:
        return self.worktree.path


Moved = Callable[[SessionMoved, Worktree], Awaitable[None]]


class SessionWorktree:
    def __init__(
        self,
        input: WorktreeInput,
        lost_after: timedelta,
        moved: Moved | None = None,
        current: Worktree | None = None,  # prepared already (a stage's, by its session)
    ):
        self.input = input
        self.lost_after = lost_after  # unanswered this long, the host counts as lost
        self.moved = moved
        self.current = current
        self.moves: list[SessionMoved] = []
        self._moving = asyncio.Lock()
        self._answered: datetime | None = None  # when its host last answered

    @property
    def worktree(self) -> Worktree:
        assert self.current is not None, "the worktree is prepared first"
        return self.current

    async def prepare(self) -> Worktree:
        """Make (or find) the worktree on whichever host takes the shared queue's task."""
        self.current = await workflow.execute_activity_method(
            RepositoryActivities.prepare_worktree,
            self.input,
            start_to_close_timeout=_PREPARE_TIMEOUT,
            retry_policy=_RETRY,
        )
        self._answered = workflow.now()
        return self.current

    async def on_host(self, call: Callable[[HostCall], Awaitable[T]]) -> T:
        """``call`` run on the worktree's host; if that host is lost, run again where the
        worktree was moved to."""
        while True:
            here = self.worktree
            options = {"task_queue": here.task_queue, "schedule_to_start_timeout": self.lost_after}
            try:
                result = await call(HostCall(here, options))
            except ActivityError as err:
                if not host_lost(err):
                    raise
                await self._move(here)
                continue
            self._answered = workflow.now()
            return result

    async def _move(self, lost: Worktree) -> None:
        async with self._moving:
            if self.current is not lost:
                return  # a call made at the same time has moved it already
            workflow.logger.warning("host %s is lost: moving the worktree", lost.host)
            since = self._answered or workflow.now()
            made = await self.prepare()
            moved = SessionMoved(
                from_host=lost.host,
                to_host=made.host,
                commit=made.head_commit,
                waited_s=round((workflow.now() - since).total_seconds(), 1),
            )
            self.moves.append(moved)
            if self.moved is not None:
                await self.moved(moved, made)

    def adopt(self, worktree: Worktree, moves: list[SessionMoved]) -> None:
        """Where a child workflow (a stage) left the worktree, and the moves it made."""
        self.current = worktree
        self.moves.extend(moves)

    async def remove(self) -> None:
        """The worktree's files go (its branch stays), on its host."""
        await self.on_host(
            lambda host: workflow.execute_activity_method(
                RepositoryActivities.remove_worktree,
                self.input,
                start_to_close_timeout=_PREPARE_TIMEOUT,
                retry_policy=_RETRY,
                **host.options,
            )
        )

    async def overview(self) -> str:
        """The repository's overview for the Planner, from the worktree."""
        return await self.on_host(
            lambda host: workflow.execute_activity_method(
                RepositoryActivities.repository_overview,
                host.path,
                start_to_close_timeout=timedelta(minutes=2),
                retry_policy=_RETRY,
                **host.options,
            )
        )

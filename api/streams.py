"""Following a session's (or one codex task's) events: what the SSE route and the WebSockets share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.vocabulary import END_KINDS, EventKind
from store.events import Event
from store.hub import EventHub
from store.models import CodexTask, RunSession

__all__ = ["StreamTarget", "event_json", "follow_batches", "follow_target", "resolve_target"]

_BATCH = 200  # events written at once, at most


@dataclass(frozen=True)
class StreamTarget:
    """Where a stream's events live: ``log_key`` in the event log, optionally one codex task's."""

    log_key: str
    codex_task_id: str | None = None

    def wants(self, event: Event) -> bool:
        return self.codex_task_id is None or event.codex_task_id == self.codex_task_id

    def is_end(self, event: Event) -> bool:
        if event.kind in END_KINDS:
            return True
        # A codex task's streams end with its last attempt, not with one a retry follows.
        return (
            self.codex_task_id is not None
            and event.kind == EventKind.CODEX_FINISHED
            and event.payload.get("final", True)
        )


async def resolve_target(db: AsyncSession, stream_id: str) -> StreamTarget | None:
    """A session's whole log, or one codex task's events (a standalone task logs under its id)."""
    if await db.get(RunSession, stream_id) is not None:
        return StreamTarget(stream_id)
    task = await db.get(CodexTask, stream_id)
    if task is not None:
        return StreamTarget(task.session_id or task.id, codex_task_id=task.id)
    return None


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "payload": event.payload,
        "codex_task_id": event.codex_task_id,
        "attempt": event.attempt,
        "created_at": event.created_at.isoformat(),
    }


async def follow_target(
    hub: EventHub,
    target: StreamTarget,
    after_id: int = 0,
    *,
    keepalive: float | None = None,
) -> AsyncGenerator[Event | None, None]:
    """The target's events after ``after_id`` up to and including its end event (with
    ``keepalive``, ``None`` whenever that many seconds pass without one)."""
    async with contextlib.aclosing(
        follow_batches(hub, target, after_id, keepalive=keepalive)
    ) as batches:
        async for batch in batches:
            if batch is None:
                yield None
            for event in batch or ():
                yield event


async def follow_batches(
    hub: EventHub,
    target: StreamTarget,
    after_id: int = 0,
    *,
    keepalive: float | None = None,
) -> AsyncGenerator[list[Event] | None, None]:
    """``follow_target``'s events in batches: every event that has arrived by the time the
    caller asks, so a busy stream is written in a few large sends rather than one per event
    (a thousand subscribers of a chatty codex task cost the API a fraction of the CPU).

    The log is read by a task of its own feeding a small queue, so a keepalive timeout never
    interrupts a read.
    """
    queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=100)

    async def pump() -> None:
        async with contextlib.aclosing(hub.subscribe(target.log_key, after_id)) as events:
            async for event in events:
                if target.wants(event):
                    await queue.put(event)

    task = asyncio.create_task(pump(), name=f"follow-{target.log_key}")
    getter: asyncio.Future[Event] | None = None
    try:
        while True:
            batch: list[Event] = []
            if queue.empty():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, task}, timeout=keepalive, return_when="FIRST_COMPLETED"
                )
                if getter not in done:
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    if task in done:
                        task.result()  # raise the follower's error
                        return
                    yield None
                    continue
                batch.append(getter.result())
            while not queue.empty() and len(batch) < _BATCH:
                batch.append(queue.get_nowait())
            for n, event in enumerate(batch):
                if target.is_end(event):
                    yield batch[: n + 1]
                    return
            yield batch
    finally:
        for pending in (task, getter):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pending

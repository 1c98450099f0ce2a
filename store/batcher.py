"""Buffered appends to the event log: :class:`EventBatcher` (codex's JSONL output is bursty)."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from itertools import islice
from types import TracebackType

from store.events import EventLog, NewEvent, wait_at_most

__all__ = ["EventBatcher", "EventFlushError"]

logger = logging.getLogger(__name__)


class EventFlushError(RuntimeError):
    """An :class:`EventBatcher` could not store its events; ``events`` are the ones not stored."""

    def __init__(self, message: str, events: list[NewEvent]) -> None:
        super().__init__(message)
        self.events = events


class EventBatcher:
    """Buffer events and append them to an :class:`EventLog` in batches, in the order added.

    Use as an async context manager. A background task flushes whenever ``max_batch`` events are
    buffered or ``interval`` seconds have passed, and the exit flushes whatever is left::

        async with EventBatcher(log) as batcher:
            while line := await stream.readline():
                await batcher.add(NewEvent(session_id, "codex.event", parse(line)))

    Backpressure: :meth:`add` is a coroutine so that memory stays bounded without the producer
    having to remember anything. It returns at once (a deque append, no suspension) unless more
    than ``max_buffer`` events are waiting, and only then waits for the flusher to catch up. A
    synchronous ``add`` plus a separate ``drain()`` would bound memory only for callers that
    remember to drain; the callers here all read codex's output in a coroutine anyway.

    Failures are never silent: a failed append is retried ``retries`` times with exponential
    backoff, and the events stay buffered meanwhile. If it still fails, the batcher stops flushing;
    ``add`` then raises :class:`EventFlushError`, and the exit tries once more before
    raising it with the unstored events attached. (If the ``async with`` body itself raised, that
    exception propagates instead, with a note about the unstored events, and the loss is logged.)
    A retried append whose commit had in fact succeeded stores that batch twice: delivery is
    at-least-once.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        interval: float = 0.1,
        max_batch: int = 50,
        max_buffer: int = 10_000,
        retries: int = 4,
        retry_delay: float = 0.1,
    ) -> None:
        if max_batch <= 0 or max_buffer <= 0 or interval <= 0:
            raise ValueError("interval, max_batch and max_buffer must be positive")
        self.log = log
        self.interval = interval
        self.max_batch = max_batch
        self.max_buffer = max_buffer
        self.retries = retries
        self.retry_delay = retry_delay
        self._buffer: deque[NewEvent] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()  # replaced after each flush round; waiters hold the old
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()  # one append at a time keeps the order and no duplicates
        self._closing = False
        self._error: BaseException | None = None
        self.flushed = 0  # events stored so far

    @property
    def pending(self) -> int:
        """Events added but not stored yet."""
        return len(self._buffer)

    async def add(self, event: NewEvent) -> None:
        """Buffer one event; wait only while more than ``max_buffer`` events are buffered.

        Raises :class:`EventFlushError` once flushing has failed for good, and ``RuntimeError``
        outside the ``async with`` block.
        """
        if self._error is not None:
            raise self._failure()
        if self._closing or self._task is None:
            raise RuntimeError("EventBatcher.add outside its async with block")
        self._buffer.append(event)
        if len(self._buffer) >= self.max_batch:
            self._wake.set()
            while len(self._buffer) > self.max_buffer and self._error is None:
                if self._task.done():
                    raise RuntimeError("the EventBatcher flusher has stopped")
                progress = self._progress
                self._wake.set()
                await progress.wait()
            if self._error is not None:
                raise self._failure()

    async def flush(self) -> None:
        """Store everything buffered now (in the caller's task), with retries."""
        await self._flush_all()
        if self._error is not None:
            raise self._failure()

    async def __aenter__(self) -> EventBatcher:
        if self._task is not None:
            raise RuntimeError("EventBatcher is not reentrant")
        self._task = asyncio.create_task(self._run(), name="event-batcher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake.set()
        assert self._task is not None
        try:
            await self._task
        except BaseException:
            self._task.cancel()
            raise
        if self._buffer:  # the flusher gave up earlier: one last try
            self._error = None
            await self._flush_all()
        if self._buffer:
            error = self._failure()
            if exc is None:
                raise error
            logger.error("%s", error, exc_info=error)
            exc.add_note(str(error))

    def _failure(self) -> EventFlushError:
        error = EventFlushError(
            f"{len(self._buffer)} session events could not be stored: {self._error!r}",
            list(self._buffer),
        )
        error.__cause__ = self._error
        return error

    async def _run(self) -> None:
        while not self._closing:
            await wait_at_most(self._wake, self.interval)
            self._wake.clear()
            if self._error is None:
                await self._flush_all()
        if self._error is None:
            await self._flush_all()

    async def _flush_all(self) -> None:
        async with self._flush_lock:
            try:
                while self._buffer and self._error is None:
                    chunk = list(islice(self._buffer, self.max_batch))
                    await self._append_with_retries(chunk)
                    if self._error is None:
                        for _ in chunk:
                            self._buffer.popleft()
                        self.flushed += len(chunk)
                    self._signal_progress()
            finally:
                self._signal_progress()

    async def _append_with_retries(self, chunk: list[NewEvent]) -> None:
        delay = self.retry_delay
        for attempt in range(self.retries + 1):
            try:
                await self.log.append(chunk)
                return
            except Exception as exc:
                if attempt == self.retries:
                    self._error = exc
                    return
                logger.warning("appending %d session events failed (%r); retrying", len(chunk), exc)
                await asyncio.sleep(delay)
                delay *= 2

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

"""The session event log: append-only rows in ``session_events``, read in pages, followed live.

Ordering guarantee
    Within one session, events are delivered by :meth:`EventLog.follow` in ``id`` order, each exactly
    once, even with concurrent writers. On PostgreSQL ids come from a sequence at insert time while
    transactions may commit in another order, so a follower reading ``id > last`` could skip a row
    that commits later with a smaller id. :meth:`EventLog.append` prevents that per session: it takes
    a transaction-scoped advisory lock for every session in the batch (sorted, so two batches never
    deadlock) *before* inserting, so one session's rows are numbered and committed one transaction
    after the other, and a row becomes visible only after every smaller id of its session has. On
    SQLite writes are serialized by the database itself. Ids of *different* sessions may still
    interleave out of commit order; order is only promised per session. Every writer of
    ``session_events`` must therefore go through :meth:`EventLog.append` or
    :meth:`EventLog.append_on`.

Waking followers
    On PostgreSQL (asyncpg) ``append`` sends ``pg_notify('session_events', <session id>)`` in the same
    transaction (delivered at commit). A follower holds one pooled connection that LISTENs on that
    channel and reads on the same connection (so size the engine's pool for the followers you
    expect); a slow poll remains as a safety net. On SQLite followers poll every ``poll_interval``.

Large outputs
    Events are stored row by row, so a run printing tens of MB becomes many rows of bounded size;
    :meth:`EventLog.read` and :meth:`EventLog.follow` work in pages of ``limit`` rows and never load a
    session's whole log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from types import TracebackType
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.models import SessionEvent, utcnow

__all__ = [
    "NOTIFY_CHANNEL",
    "Event",
    "EventBatcher",
    "EventFlushError",
    "EventHub",
    "EventLog",
    "NewEvent",
    "SubscriberTooSlow",
    "session_lock_key",
]

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "session_events"
"""The PostgreSQL channel ``append`` notifies; the payload is the session id."""

PG_SAFETY_POLL_S = 5.0
"""On PostgreSQL a follower re-reads at least this often even without a notification."""

_RECONNECT_DELAY_S = 0.5
_TABLE = cast(Table, SessionEvent.__table__)
_COLUMNS = (
    _TABLE.c.id,
    _TABLE.c.session_id,
    _TABLE.c.kind,
    _TABLE.c.payload,
    _TABLE.c.codex_task_id,
    _TABLE.c.attempt,
    _TABLE.c.created_at,
)


@dataclass(frozen=True)
class NewEvent:
    """An event to append; the log assigns ``id`` and ``created_at``."""

    session_id: str
    kind: str
    payload: dict[str, Any]
    codex_task_id: str | None = None
    attempt: int | None = None


SESSION_END_KINDS = frozenset({"session.finished", "session.failed", "session.cancelled"})
"""The kinds that end a session's log: followers stop after one."""


@dataclass(frozen=True)
class Event:
    """A stored event. ``id`` orders a session's events and is what followers resume from."""

    id: int
    session_id: str
    kind: str
    payload: dict[str, Any]
    codex_task_id: str | None
    attempt: int | None
    created_at: datetime


def session_lock_key(session_id: str) -> int:
    """The 64-bit advisory-lock key that serializes one session's appends on PostgreSQL.

    Computed here rather than with ``hashtext`` so the keys can be sorted client-side (a consistent
    lock order even for colliding hashes) and collide far less often than a 32-bit hash.
    """
    digest = hashlib.blake2b(
        session_id.encode(), digest_size=8, person=b"codexflow-events"
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def _to_event(row: Any) -> Event:
    created_at: datetime = row.created_at
    if created_at.tzinfo is None:  # SQLite keeps no zone; everything is written in UTC
        created_at = created_at.replace(tzinfo=UTC)
    return Event(
        id=row.id,
        session_id=row.session_id,
        kind=row.kind,
        payload=row.payload,
        codex_task_id=row.codex_task_id,
        attempt=row.attempt,
        created_at=created_at,
    )


async def _wait(event: asyncio.Event, at_most: float) -> None:
    """Until ``event`` is set or ``at_most`` seconds pass. Not ``asyncio.wait_for``: on Python 3.11 it
    loses a cancellation that arrives as the event is set, and the cancelled loop runs on forever."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(at_most):
            await event.wait()


def _is_disconnect(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    if isinstance(exc, OSError | ConnectionError):
        return True
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    return isinstance(
        exc,
        asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CannotConnectNowError,
    )


class EventLog:
    """Append, read and follow session events on an :class:`AsyncEngine` (SQLite or PostgreSQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._listen = self._postgres and engine.dialect.driver == "asyncpg"

    # -- writing -----------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> None:
        """Insert ``events`` in one transaction, in the given order (ids increase along it)."""
        if events:
            async with self.engine.begin() as conn:
                await self.append_on(conn, events)

    async def append_on(self, conn: AsyncConnection, events: Sequence[NewEvent]) -> None:
        """Append ``events`` in the caller's transaction on ``conn``; the caller commits.

        Use it to record an event atomically with the change it describes. On PostgreSQL the
        session's advisory lock is held until that commit, so make this the transaction's last
        step: a long transaction delays the session's other appends, and taking row locks after it
        invites deadlocks. ``conn`` must be in a real transaction (not AUTOCOMMIT).
        """
        if not events:
            return
        now = utcnow()
        rows = [
            {
                "session_id": e.session_id,
                "codex_task_id": e.codex_task_id,
                "attempt": e.attempt,
                "kind": e.kind,
                "payload": e.payload,
                "created_at": now,
            }
            for e in events
        ]
        if self._postgres:
            await self._lock_sessions(conn, {e.session_id for e in events})
        await self._insert(conn, rows)

    async def _lock_sessions(self, conn: AsyncConnection, sessions: set[str]) -> None:
        """Lock each session for this transaction and queue its NOTIFY (sent only at commit).

        Sorted by key, so every transaction takes its locks in the same order and none deadlock.
        """
        for key, session_id in sorted((session_lock_key(s), s) for s in sessions):
            await conn.execute(
                select(func.pg_advisory_xact_lock(key), func.pg_notify(NOTIFY_CHANNEL, session_id))
            )

    async def _insert(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        await conn.execute(insert(_TABLE), rows)

    # -- reading -----------------------------------------------------------------------------

    async def last_id(self, session_id: str) -> int:
        """The id of the session's newest event (0 when it has none)."""
        async with self.engine.connect() as conn:
            query = select(func.max(_TABLE.c.id)).where(_TABLE.c.session_id == session_id)
            return int(await conn.scalar(query) or 0)

    async def read(self, session_id: str, after_id: int = 0, limit: int = 500) -> list[Event]:
        """Up to ``limit`` events of the session with ``id > after_id``, ordered by id."""
        async with self.engine.connect() as conn:
            return await self._read_on(conn, session_id, after_id, limit)

    @staticmethod
    async def _read_on(
        conn: AsyncConnection, session_id: str, after_id: int, limit: int
    ) -> list[Event]:
        if limit <= 0:
            raise ValueError("limit must be positive")
        result = await conn.execute(
            select(*_COLUMNS)
            .where(_TABLE.c.session_id == session_id, _TABLE.c.id > after_id)
            .order_by(_TABLE.c.id)
            .limit(limit)
        )
        return [_to_event(row) for row in result]

    async def follow(
        self, session_id: str, after_id: int = 0, *, poll_interval: float = 0.25
    ) -> AsyncGenerator[Event, None]:
        """Yield every event of the session with ``id > after_id``, in order, forever.

        The caller breaks out of the loop; wrap the iterator in :func:`contextlib.aclosing` so its
        connection is released at once rather than when the generator is garbage-collected.

        On PostgreSQL with asyncpg a NOTIFY from :meth:`append` wakes the follower; it re-reads at
        least every ``max(poll_interval, PG_SAFETY_POLL_S)`` seconds regardless, and reconnects (from
        the last delivered id) if its connection drops. Elsewhere it polls every ``poll_interval``.
        """
        page = 500
        if not self._listen:
            last = after_id
            while True:
                events = await self.read(session_id, last, page)
                for event in events:
                    last = event.id
                    yield event
                if len(events) < page:
                    await asyncio.sleep(poll_interval)
        else:
            last = after_id
            safety = max(poll_interval, PG_SAFETY_POLL_S)
            while True:
                try:
                    async with contextlib.aclosing(
                        self._follow_listening(session_id, last, page, safety)
                    ) as listening:
                        async for event in listening:
                            last = event.id
                            yield event
                except Exception as exc:
                    if not _is_disconnect(exc):
                        raise
                    logger.warning("event follower lost its connection (%s); reconnecting", exc)
                    await asyncio.sleep(_RECONNECT_DELAY_S)

    async def _follow_listening(
        self, session_id: str, after_id: int, page: int, safety: float
    ) -> AsyncGenerator[Event, None]:
        wake = asyncio.Event()

        def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            if payload == session_id:
                wake.set()

        def on_terminate(_conn: object) -> None:
            wake.set()  # the next read fails and ``follow`` reconnects

        async with self.engine.connect() as conn:
            # Autocommit: each read is one statement with a fresh snapshot, no idle transaction.
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            # LISTEN before the first read: anything committed later is notified, anything
            # committed earlier is seen by that read.
            await raw.add_listener(NOTIFY_CHANNEL, on_notify)
            raw.add_termination_listener(on_terminate)
            try:
                last = after_id
                while True:
                    wake.clear()  # before reading: a commit after this read wakes the next wait
                    events = await self._read_on(conn, session_id, last, page)
                    for event in events:
                        last = event.id
                        yield event
                    if len(events) < page:
                        await _wait(wake, safety)
            finally:
                raw.remove_termination_listener(on_terminate)
                try:
                    if not raw.is_closed():
                        await raw.remove_listener(NOTIFY_CHANNEL, on_notify)
                except BaseException:
                    # Never hand a connection that may still LISTEN back to the pool.
                    await conn.invalidate()
                    raise


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
            await _wait(self._wake, self.interval)
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


class SubscriberTooSlow(RuntimeError):
    """A subscriber fell too far behind its feed; it should reconnect from its last event id."""


class EventHub:
    """One follower per session in this process, fanned out to every subscriber.

    Hundreds of SSE or WebSocket clients of one session then cost one database follower (one
    connection on PostgreSQL, one poller on SQLite) instead of one each. A subscriber first reads
    its backlog from the log itself, then takes the feed's events after the last one it yielded:
    it is registered with the feed before it reads the backlog, and the log hands a session's
    events out in id order, so nothing falls between the two.
    """

    def __init__(
        self, log: EventLog, *, max_lag: int = 10_000, poll_interval: float = 0.05
    ) -> None:
        self.log = log
        self.max_lag = max_lag
        self.poll_interval = poll_interval  # SQLite only; PostgreSQL followers are notified
        self._feeds: dict[str, _Feed] = {}

    @property
    def feeds(self) -> int:
        """Followers running now (one per followed session)."""
        return len(self._feeds)

    async def subscribe(self, session_id: str, after_id: int = 0) -> AsyncGenerator[Event, None]:
        """Every event of the session with ``id > after_id``, in order, until the caller stops."""
        feed = self._feeds.get(session_id)
        if feed is None:
            feed = self._feeds[session_id] = _Feed(self, session_id)
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        feed.subscribers.add(queue)
        try:
            await feed.started()
            cursor = after_id
            while page := await self.log.read(session_id, cursor):
                for event in page:
                    yield event
                cursor = page[-1].id
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item.id > cursor:
                    cursor = item.id
                    yield item
        finally:
            feed.subscribers.discard(queue)
            if not feed.subscribers:
                self._feeds.pop(session_id, None)
                await feed.stop()


class _Feed:
    def __init__(self, hub: EventHub, session_id: str) -> None:
        self.hub = hub
        self.session_id = session_id
        self.subscribers: set[asyncio.Queue[Event | BaseException]] = set()
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"event-feed-{session_id}")

    async def started(self) -> None:
        # The feed starts from the log's end; subscribers read anything older themselves.
        await self._ready.wait()

    async def _run(self) -> None:
        try:
            start = await self.hub.log.last_id(self.session_id)
            self._ready.set()
            follow = self.hub.log.follow(
                self.session_id, start, poll_interval=self.hub.poll_interval
            )
            async with contextlib.aclosing(follow) as events:
                async for event in events:
                    for queue in list(self.subscribers):
                        if queue.qsize() >= self.hub.max_lag:
                            self.subscribers.discard(queue)
                            queue.put_nowait(SubscriberTooSlow("reconnect with Last-Event-ID"))
                        else:
                            queue.put_nowait(event)
        except Exception as err:  # the subscribers see the follower's failure
            self._ready.set()
            for queue in list(self.subscribers):
                queue.put_nowait(err)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

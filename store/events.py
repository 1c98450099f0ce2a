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
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from store.models import SessionEvent, utcnow

__all__ = [
    "NOTIFY_CHANNEL",
    "Event",
    "EventLog",
    "NewEvent",
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


async def wait_at_most(event: asyncio.Event, at_most: float) -> None:
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
                        await wait_at_most(wake, safety)
            finally:
                raw.remove_termination_listener(on_terminate)
                try:
                    if not raw.is_closed():
                        await raw.remove_listener(NOTIFY_CHANNEL, on_notify)
                except BaseException:
                    # Never hand a connection that may still LISTEN back to the pool.
                    await conn.invalidate()
                    raise

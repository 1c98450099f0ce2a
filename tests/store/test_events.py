"""The session event log on SQLite and on a real (throwaway) PostgreSQL: the same tests on both."""

from __future__ import annotations

import asyncio
import contextlib
import random
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from store.batcher import EventBatcher, EventFlushError
from store.db import make_engine
from store.events import NOTIFY_CHANNEL, Event, EventLog, NewEvent, wait_at_most
from store.hub import EventHub
from store.models import Base, SessionEvent


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A fresh database with the tables: a SQLite file, or a new database in the PG cluster."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'events.db'}")
        drop: Callable[[], Awaitable[None]] | None = None
    else:
        base = make_url(request.getfixturevalue("postgres_server"))
        name = f"events_{uuid.uuid4().hex[:12]}"
        admin = create_async_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        eng = make_engine(base.set(database=name).render_as_string(hide_password=False))

        async def drop() -> None:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            await admin.dispose()

    async with eng.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield eng
    finally:
        await eng.dispose()
        if drop is not None:
            await drop()


def is_pg(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], within: float = 10.0, step: float = 0.01
) -> None:
    """Poll ``predicate`` (a database query) until it holds; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while not await predicate():  # noqa: ASYNC110 - polling the database, not a task
            await asyncio.sleep(step)


async def count(engine: AsyncEngine, session_id: str) -> int:
    async with engine.connect() as conn:
        n = await conn.scalar(select(func.count()).where(SessionEvent.session_id == session_id))
    return int(n or 0)


async def all_events(log: EventLog, session_id: str, page: int = 200) -> list[Event]:
    out: list[Event] = []
    while batch := await log.read(session_id, out[-1].id if out else 0, page):
        out.extend(batch)
    return out


def ev(session: str, i: int, **payload: Any) -> NewEvent:
    return NewEvent(session_id=session, kind="item", payload={"i": i, **payload})


# -- append / read ----------------------------------------------------------------------------


async def test_append_and_read_in_order(engine: AsyncEngine) -> None:
    log = EventLog(engine)
    await log.append([])  # a no-op
    await log.append(
        [
            NewEvent("s1", "start", {"n": 0}, codex_task_id="t1", attempt=1),
            NewEvent("s2", "start", {"n": 0}),
            *(ev("s1", i, text="é" * i) for i in range(1, 10)),
        ]
    )
    await log.append([ev("s1", i) for i in range(10, 20)])

    events = await log.read("s1")
    assert [e.payload["n" if e.kind == "start" else "i"] for e in events] == list(range(20))
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    first = events[0]
    assert (first.session_id, first.kind, first.codex_task_id, first.attempt) == (
        "s1",
        "start",
        "t1",
        1,
    )
    assert first.created_at.tzinfo is not None and first.created_at.utcoffset() == UTC.utcoffset(
        None
    )
    assert events[3].payload == {"i": 3, "text": "ééé"}
    assert events[3].codex_task_id is None and events[3].attempt is None

    # Paging: after_id and limit.
    assert [e.id for e in await log.read("s1", after_id=ids[4], limit=3)] == ids[5:8]
    assert await log.read("s1", after_id=ids[-1]) == []
    assert [e.kind for e in await log.read("s2")] == ["start"]
    assert await log.read("nobody") == []
    with pytest.raises(ValueError):
        await log.read("s1", limit=0)


async def test_append_on_joins_the_callers_transaction(engine: AsyncEngine) -> None:
    log = EventLog(engine)
    with pytest.raises(ZeroDivisionError):
        async with engine.begin() as conn:
            await log.append_on(conn, [ev("s", 1)])
            raise ZeroDivisionError  # rolled back: the event goes with the change
    assert await log.read("s") == []
    async with engine.begin() as conn:
        await log.append_on(conn, [ev("s", 2), ev("s", 3)])
        await log.append_on(conn, [])
    assert [e.payload["i"] for e in await log.read("s")] == [2, 3]


# -- follow -----------------------------------------------------------------------------------


class JitterLog(EventLog):
    """Holds each transaction open a little after inserting, to widen any commit-order race."""

    async def _insert(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        await super()._insert(conn, rows)
        await asyncio.sleep(random.uniform(0, 0.003))


async def test_follow_with_concurrent_writers_delivers_everything_once_in_order(
    engine: AsyncEngine,
) -> None:
    log = JitterLog(engine)
    session, writers, appends = "s-" + uuid.uuid4().hex[:6], 4, 30
    received: list[Event] = []
    all_written = asyncio.Event()
    last_id: list[int] = []

    async def follower() -> None:
        async with contextlib.aclosing(log.follow(session, poll_interval=0.005)) as events:
            async for event in events:
                received.append(event)
                if all_written.is_set() and event.id == last_id[0]:
                    return

    async def writer(w: int) -> None:
        seq = 0
        for _ in range(appends):
            n = random.randint(1, 3)
            await log.append([ev(session, seq + k, writer=w) for k in range(n)])
            seq += n
            await asyncio.sleep(random.uniform(0, 0.002))

    async def noise() -> None:  # another session's traffic interleaves its ids
        for i in range(appends):
            await log.append([ev("other", i)])

    follow_task = asyncio.create_task(follower())
    await asyncio.gather(*(writer(w) for w in range(writers)), noise())
    stored = await all_events(log, session)
    last_id.append(stored[-1].id)
    all_written.set()
    if received and received[-1].id == last_id[0]:
        follow_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(follow_task, timeout=10)

    ids = [e.id for e in received]
    assert ids == [e.id for e in stored], "follower missed or repeated events"
    assert all(a < b for a, b in zip(ids, ids[1:], strict=False))
    for w in range(writers):  # each writer's events arrive in the order it wrote them
        seqs = [e.payload["i"] for e in received if e.payload["writer"] == w]
        assert seqs == list(range(len(seqs))) and seqs

    # Resuming from an id in the middle yields exactly the rest, then only what comes next.
    middle = ids[len(ids) // 2]
    rest = [e.id for e in stored if e.id > middle]
    resumed: list[int] = []
    async with contextlib.aclosing(log.follow(session, middle, poll_interval=0.005)) as events:
        async with asyncio.timeout(10):
            async for event in events:
                resumed.append(event.id)
                if len(resumed) == len(rest):
                    break
        assert resumed == rest
        await log.append([ev(session, -1, sentinel=True)])
        nxt = await asyncio.wait_for(anext(events), timeout=10)
        assert nxt.payload.get("sentinel") is True and nxt.id > rest[-1]


class HoldLog(EventLog):
    """Keeps a transaction open after its insert while its batch has a ``hold`` payload."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.inserted = asyncio.Event()
        self.release = asyncio.Event()

    async def _insert(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        await super()._insert(conn, rows)
        if any(row["payload"].get("hold") for row in rows):
            self.inserted.set()
            await self.release.wait()


class NoLockHoldLog(HoldLog):
    """The broken variant: notifies, but does not serialize a session's transactions."""

    async def _lock_sessions(self, conn: AsyncConnection, sessions: set[str]) -> None:
        for session_id in sessions:
            await conn.execute(select(func.pg_notify(NOTIFY_CHANNEL, session_id)))


async def waiting_advisory_locks(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        n = await conn.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
    return int(n or 0)


async def test_a_later_transaction_waits_for_an_open_one_of_the_same_session(
    engine: AsyncEngine,
) -> None:
    """The gap scenario, made deterministic: A inserts (smaller id) and stays open, B commits."""
    log = HoldLog(engine)
    got: asyncio.Queue[Event] = asyncio.Queue()

    async def follower() -> None:
        async for event in log.follow("s", poll_interval=0.005):
            got.put_nowait(event)

    follow_task = asyncio.create_task(follower())
    try:
        a = asyncio.create_task(log.append([ev("s", 1, hold=True)]))
        await asyncio.wait_for(log.inserted.wait(), timeout=5)
        b = asyncio.create_task(log.append([ev("s", 2)]))
        if is_pg(engine):

            async def b_waits_on_the_lock() -> bool:
                return await waiting_advisory_locks(engine) >= 1

            await wait_until(b_waits_on_the_lock)
        else:
            await asyncio.sleep(0.2)  # SQLite: B waits for the write lock
        assert not b.done() and got.empty()
        log.release.set()
        await asyncio.wait_for(asyncio.gather(a, b), timeout=10)
        first = await asyncio.wait_for(got.get(), timeout=10)
        second = await asyncio.wait_for(got.get(), timeout=10)
        assert (first.payload["i"], second.payload["i"]) == (1, 2)
        assert first.id < second.id
    finally:
        follow_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follow_task


# PostgreSQL only: SQLite serializes writers, polls, and holds no connection.
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_control_without_the_lock_a_follower_skips_a_row(engine: AsyncEngine) -> None:
    """Shows the checks above catch a gap: without the lock PostgreSQL commits out of id order."""
    log = NoLockHoldLog(engine)
    async with contextlib.aclosing(log.follow("s", poll_interval=0.005)) as events:
        a = asyncio.create_task(log.append([ev("s", 1, hold=True)]))
        await asyncio.wait_for(log.inserted.wait(), timeout=5)
        await asyncio.wait_for(log.append([ev("s", 2)]), timeout=5)  # commits first
        second = await asyncio.wait_for(anext(events), timeout=10)
        log.release.set()
        await a
        await log.append([ev("s", 3)])
        third = await asyncio.wait_for(anext(events), timeout=10)
    first = (await log.read("s"))[0]
    assert first.payload["i"] == 1 and first.id < second.id
    assert (second.payload["i"], third.payload["i"]) == (2, 3)  # event 1 was never delivered


# PostgreSQL only: SQLite serializes writers, polls, and holds no connection.
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_follow_is_woken_by_notify(engine: AsyncEngine) -> None:
    log = EventLog(engine)
    await log.append([ev("s", 1)])
    # A 30 s poll: only the LISTEN/NOTIFY path can deliver the second event within 10 s.
    async with contextlib.aclosing(log.follow("s", poll_interval=30)) as events:
        first = await asyncio.wait_for(anext(events), timeout=10)
        pending = asyncio.create_task(anext(events))
        await asyncio.sleep(0.2)  # the follower is now waiting for a notification
        await log.append([ev("other", 0)])  # another session's NOTIFY does not wake it wrongly
        await log.append([ev("s", 2)])
        second = await asyncio.wait_for(pending, timeout=10)
    assert (first.payload["i"], second.payload["i"]) == (1, 2)


# PostgreSQL only: SQLite serializes writers, polls, and holds no connection.
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
async def test_follow_reconnects_after_losing_its_connection(engine: AsyncEngine) -> None:
    log = EventLog(engine)
    await log.append([ev("s", 1)])
    async with contextlib.aclosing(log.follow("s", poll_interval=30)) as events:
        first = await asyncio.wait_for(anext(events), timeout=10)
        pending = asyncio.create_task(anext(events))
        await asyncio.sleep(0.2)
        async with engine.connect() as conn:  # kill every other backend, the follower's too
            killed = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                )
            )
        assert killed
        await log.append([ev("s", 2)])
        second = await asyncio.wait_for(pending, timeout=10)
    assert (first.payload["i"], second.payload["i"]) == (1, 2)


# -- large outputs ----------------------------------------------------------------------------


async def test_large_output_is_stored_by_row_and_read_by_page(engine: AsyncEngine) -> None:
    log = EventLog(engine)
    size, n, batch = 10_000, 2_000, 50  # 2,000 events of 10 kB: 20 MB
    for start in range(0, n, batch):
        await log.append(
            [
                NewEvent("big", "output", {"i": i, "text": f"{i:08d}" + "x" * (size - 8)})
                for i in range(start, start + batch)
            ]
        )
    del start

    page, total, seen, after = 50, 0, 0, 0
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        while events := await log.read("big", after, page):
            assert len(events) <= page
            for e in events:
                assert e.payload["i"] == seen and len(e.payload["text"]) == size
                seen += 1
                total += len(e.payload["text"])
            after = events[-1].id
            del events
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (seen, total) == (n, n * size)
    # One page is 500 kB of text; the whole log is 20 MB. Only a page or two is ever held.
    assert peak < 5_000_000, peak


# -- EventBatcher -----------------------------------------------------------------------------


class RecordingLog(EventLog):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.batches: list[int] = []

    async def append(self, events: Sequence[NewEvent]) -> None:
        await super().append(events)
        self.batches.append(len(events))


async def test_batcher_flushes_by_size_and_at_exit(engine: AsyncEngine) -> None:
    log = RecordingLog(engine)
    async with EventBatcher(log, interval=60, max_batch=10) as batcher:
        for i in range(10):
            await batcher.add(ev("s", i))

        async def ten() -> bool:
            return await count(engine, "s") == 10

        await wait_until(ten)
        for i in range(10, 15):
            await batcher.add(ev("s", i))
        await asyncio.sleep(0.2)
        assert batcher.pending == 5 and await count(engine, "s") == 10  # below size: waits
    assert log.batches == [10, 5] and batcher.pending == 0 and batcher.flushed == 15
    assert [e.payload["i"] for e in await log.read("s")] == list(range(15))


async def test_batcher_flushes_by_interval(engine: AsyncEngine) -> None:
    log = RecordingLog(engine)
    async with EventBatcher(log, interval=0.05, max_batch=1000) as batcher:
        for i in range(3):
            await batcher.add(ev("s", i))

        async def three() -> bool:
            return await count(engine, "s") == 3

        await wait_until(three, within=5)
        assert log.batches == [3]


async def test_batcher_flushes_at_exit_and_keeps_order(engine: AsyncEngine) -> None:
    log = RecordingLog(engine)
    async with EventBatcher(log, interval=60, max_batch=1000) as batcher:
        for i in range(7):
            await batcher.add(ev("s", i))
        assert await count(engine, "s") == 0
        await batcher.flush()  # on demand
        assert await count(engine, "s") == 7 and batcher.pending == 0
        for i in range(7, 10):
            await batcher.add(ev("s", i))
    assert [e.payload["i"] for e in await log.read("s")] == list(range(10))
    assert log.batches == [7, 3]
    with pytest.raises(RuntimeError):
        await batcher.add(ev("s", 8))


class FlakyLog(EventLog):
    def __init__(self, engine: AsyncEngine, failures: int) -> None:
        super().__init__(engine)
        self.failures = failures
        self.calls = 0

    async def append(self, events: Sequence[NewEvent]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("database unavailable")
        await super().append(events)


async def test_batcher_retries_a_failed_flush(engine: AsyncEngine) -> None:
    log = FlakyLog(engine, failures=2)
    async with EventBatcher(log, interval=0.01, retries=3, retry_delay=0.01) as batcher:
        for i in range(20):
            await batcher.add(ev("s", i))
    assert [e.payload["i"] for e in await log.read("s")] == list(range(20))


async def test_batcher_raises_at_exit_when_flushing_keeps_failing(engine: AsyncEngine) -> None:
    log = FlakyLog(engine, failures=10**9)
    with pytest.raises(EventFlushError) as info:
        async with EventBatcher(log, interval=0.01, retries=2, retry_delay=0.01) as batcher:
            for i in range(5):
                await batcher.add(ev("s", i))

            async def failed() -> bool:
                return batcher._error is not None

            await wait_until(failed)
            with pytest.raises(EventFlushError):
                await batcher.add(ev("s", 99))
            with pytest.raises(EventFlushError):
                await batcher.flush()
    assert [e.payload["i"] for e in info.value.events] == list(range(5))
    assert isinstance(info.value.__cause__, ConnectionError)
    assert await count(engine, "s") == 0


async def test_batcher_does_not_mask_the_body_exception(engine: AsyncEngine) -> None:
    log = FlakyLog(engine, failures=10**9)
    with pytest.raises(KeyError) as info:
        async with EventBatcher(log, interval=60, retries=1, retry_delay=0.01) as batcher:
            await batcher.add(ev("s", 1))
            raise KeyError("boom")
    assert any("could not be stored" in note for note in info.value.__notes__)


class GatedLog(RecordingLog):
    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.gate = asyncio.Event()

    async def append(self, events: Sequence[NewEvent]) -> None:
        await self.gate.wait()
        await super().append(events)


async def test_batcher_add_applies_backpressure(engine: AsyncEngine) -> None:
    log = GatedLog(engine)
    async with EventBatcher(log, interval=0.01, max_batch=5, max_buffer=20) as batcher:
        async with asyncio.timeout(1):  # up to max_buffer, add returns at once
            for i in range(20):
                await batcher.add(ev("s", i))
        blocked = asyncio.create_task(batcher.add(ev("s", 20)))
        await asyncio.sleep(0.1)
        assert not blocked.done() and batcher.pending == 21  # the store is stuck: add waits
        log.gate.set()
        await asyncio.wait_for(blocked, timeout=10)
        assert batcher.pending <= 20
        for i in range(21, 30):
            await batcher.add(ev("s", i))
    assert [e.payload["i"] for e in await log.read("s")] == list(range(30))


async def test_hub_fans_one_follower_out_to_every_subscriber(engine: AsyncEngine) -> None:
    """Subscribers joining at different points, with a writer running, each get their events
    once, in order, from one shared follower."""
    log = EventLog(engine)
    hub = EventHub(log, poll_interval=0.01)
    await log.append([ev("s", i) for i in range(5)])
    ids = [e.id for e in await log.read("s")]

    async def collect(after_id: int, until: int) -> list[int]:
        seen: list[int] = []
        async with contextlib.aclosing(hub.subscribe("s", after_id)) as events:
            async for event in events:
                seen.append(event.payload["i"])
                if event.payload["i"] == until:
                    return seen
        return seen

    early = asyncio.create_task(collect(0, 39))
    late = asyncio.create_task(collect(ids[2], 39))
    for batch in range(5, 40, 5):
        await log.append([ev("s", i) for i in range(batch, batch + 5)])
        await log.append([ev("other", batch)])
        await asyncio.sleep(0.01)
        if batch == 20:
            assert hub.feeds == 1  # both subscribers share one follower
    assert await asyncio.wait_for(early, 30) == list(range(40))
    assert await asyncio.wait_for(late, 30) == list(range(3, 40))
    assert hub.feeds == 0  # the follower stops with its last subscriber


async def test_a_follower_cancelled_as_it_is_woken_stops() -> None:
    """A follower (or batcher) cancelled in the very step its wake-up event is set must stop:
    Python 3.11's ``asyncio.wait_for`` loses such a cancellation, and the loop ran on forever."""
    wake = asyncio.Event()
    waiting = asyncio.create_task(wait_at_most(wake, 10))
    await asyncio.sleep(0)  # now blocked on the event
    wake.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

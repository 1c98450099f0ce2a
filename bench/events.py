"""The session event log on SQLite and on a throwaway PostgreSQL cluster, in one run.

    .venv/bin/python bench/events.py [--events 20000] [--rate 200] [--seconds 5]

Prints, per database: append throughput (batches of 50, one event per transaction, and through an
``EventBatcher``), how fast a follower catches up on a backlog, and the insert-to-follower latency (a writer appends single events
at a fixed rate; the follower records receive time - send time, send time taken just before
``append``). SQLite followers poll, so their latency is about half the poll interval; PostgreSQL
followers are woken by LISTEN/NOTIFY.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.ext.asyncio import AsyncEngine  # noqa: E402

from devkit.postgres import throwaway_postgres  # noqa: E402
from store.batcher import EventBatcher  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.events import PG_SAFETY_POLL_S, EventLog, NewEvent  # noqa: E402
from store.models import Base  # noqa: E402

# About the size of a codex JSONL line with a short command output.
PAYLOAD: dict[str, Any] = {
    "type": "item.completed",
    "item": {"id": "item_7", "type": "command_execution", "aggregated_output": "x" * 200},
}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def append_throughput(log: EventLog, n: int, batch: int) -> float:
    session = f"tp-{batch}"
    start = time.perf_counter()
    for i in range(0, n, batch):
        await log.append(
            [NewEvent(session, "codex", {**PAYLOAD, "i": j}) for j in range(i, min(n, i + batch))]
        )
    return n / (time.perf_counter() - start)


async def batcher_throughput(log: EventLog, n: int) -> float:
    """Events per second through ``EventBatcher.add`` (defaults: 50 per batch) until stored."""
    start = time.perf_counter()
    async with EventBatcher(log) as batcher:
        for i in range(n):
            await batcher.add(NewEvent("batcher", "codex", {**PAYLOAD, "i": i}))
    return n / (time.perf_counter() - start)


async def catch_up(log: EventLog, n: int) -> float:
    start, seen = time.perf_counter(), 0
    async with contextlib.aclosing(log.follow("tp-50")) as events:
        async for _ in events:
            seen += 1
            if seen == n:
                break
    return n / (time.perf_counter() - start)


async def latency(log: EventLog, rate: float, seconds: float, poll: float) -> list[float]:
    session = f"lat-{poll}"
    n = int(rate * seconds)
    delays: list[float] = []

    async def follower() -> None:
        async with contextlib.aclosing(log.follow(session, poll_interval=poll)) as events:
            async for event in events:
                delays.append(time.perf_counter() - event.payload["sent"])
                if len(delays) == n:
                    return

    task = asyncio.create_task(follower())
    await asyncio.sleep(0.5)  # the follower is listening / polling
    start = time.perf_counter()
    for i in range(n):
        if (wait := start + i / rate - time.perf_counter()) > 0:
            await asyncio.sleep(wait)
        await log.append([NewEvent(session, "codex", {**PAYLOAD, "sent": time.perf_counter()})])
    await asyncio.wait_for(task, timeout=60)
    return delays


async def run(name: str, engine: AsyncEngine, args: argparse.Namespace) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    log = EventLog(engine)
    batched = await append_throughput(log, args.events, 50)
    single = await append_throughput(log, args.events // 10, 1)
    via_batcher = await batcher_throughput(log, args.events)
    follow_rate = await catch_up(log, args.events)
    print(f"{name}")
    print(f"  append, batches of 50      {batched:>10,.0f} events/s  ({args.events:,} events)")
    print(f"  append, 1 per transaction  {single:>10,.0f} events/s  ({args.events // 10:,} events)")
    print(f"  EventBatcher, add to stored{via_batcher:>10,.0f} events/s  ({args.events:,} events)")
    print(f"  follow, catching up        {follow_rate:>10,.0f} events/s  ({args.events:,} events)")
    polls = [0.25, 0.02] if engine.dialect.name == "sqlite" else [0.25]
    for poll in polls:
        delays = [d * 1000 for d in await latency(log, args.rate, args.seconds, poll)]
        if engine.dialect.name == "sqlite":
            how = f"poll every {poll * 1000:.0f} ms"
        else:
            how = f"LISTEN/NOTIFY, safety poll {max(poll, PG_SAFETY_POLL_S):.0f} s"
        print(
            f"  insert->follower latency ({how}, {args.rate:.0f}/s x "
            f"{args.seconds:.0f} s, n={len(delays)}): p50 {statistics.median(delays):.1f} ms, "
            f"p95 {pct(delays, 95):.1f} ms, max {max(delays):.1f} ms"
        )
    await engine.dispose()


async def main_async(args: argparse.Namespace, pg_url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="codexflow-bench-") as tmp:
        await run("SQLite (WAL)", make_engine(f"sqlite+aiosqlite:///{tmp}/events.db"), args)
    await run("PostgreSQL (throwaway cluster, fsync=off)", make_engine(pg_url), args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with throwaway_postgres() as pg_url:
        asyncio.run(main_async(args, pg_url))


if __name__ == "__main__":
    main()

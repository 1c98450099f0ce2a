"""The HTTP API under load, with pipeline runs live behind it.

    .venv/bin/python bench/api_load.py [--rates 50,200,1000] [--sessions 1,20] [--seconds 10]
                                       [--subscribers 1000] [--event-rate 20] [--events 100]

Starts a Temporal dev server, an in-process worker (scripted model, fake codex) and the API under
uvicorn in a subprocess on a free port, over a migrated SQLite database in a temp dir; creates a
project and starts sessions whose codex steps sleep, so they are running while measured. First,
how long the API takes from its process starting to answering. Then:

(a) ``GET /api/sessions/{id}`` (the row plus the workflow's live status), open loop at each
    rate, spread over 1 and over 20 running sessions: latency p50/p99 of the 200s, the share
    of 503s (the API at capacity, with Retry-After) and of anything else (errors);
(b) ``/api/sessions/{id}/events`` to N concurrent SSE subscribers while events are appended with
    ``EventLog`` at a fixed rate: per subscriber, receive time - the event's ``created_at``, p50/p95
    (the figures printed are the median and worst subscriber's).

Prints the figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.openai_agents.testing import TestModelProvider  # noqa: E402

from config import Settings  # noqa: E402
from devkit.agent_model import ScriptedAgentModel, pipeline_script  # noqa: E402
from devkit.processes import free_port, scratch_settings, start_dev_server  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.events import EventLog, NewEvent  # noqa: E402
from worker import agents_plugin, build_worker  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
# Long enough for the run to be mid-codex through both measurements; cancelled at the end.
CODEX_PROMPT = "@fake sleep=120"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def api_process(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CODEXFLOW_DATABASE_URL": settings.database_url,
        "CODEXFLOW_WORKSPACES_ROOT": str(settings.workspaces_root),
        "CODEXFLOW_CODEX_HOME": str(settings.codex_home),
        "CODEXFLOW_TEMPORAL_ADDRESS": settings.temporal_address,
        "CODEXFLOW_TASK_QUEUE": settings.task_queue,
        "CODEXFLOW_API_TOKEN": TOKEN,
        "CODEXFLOW_LOG_LEVEL": "WARNING",
    }
    # As users start it (`codexflow api`), so the start-up figure is theirs.
    command = [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(port)]
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(command, env=env, cwd=root)


async def wait_up(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    async with asyncio.timeout(30):
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the API exited with {process.returncode}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/api/health")).status_code < 500:
                    return
            await asyncio.sleep(0.1)


class RawClient:
    """HTTP/1.1 GETs over a pool of kept-alive connections, written by hand: httpx costs a few ms
    of CPU a request, so at hundreds a second the benchmark, not the API, would be measured."""

    def __init__(self, host: str, port: int, connections: int) -> None:
        self.host, self.port = host, port
        self.idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.slots = asyncio.Semaphore(connections)

    async def get(self, path: str) -> int:
        async with self.slots:
            try:
                reader, writer = self.idle.get_nowait()
            except asyncio.QueueEmpty:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            )
            writer.write(request.encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if b"connection: close" in head.lower():
                writer.close()
            else:
                self.idle.put_nowait((reader, writer))
            return status

    async def close(self) -> None:
        while not self.idle.empty():
            _, writer = self.idle.get_nowait()
            writer.close()


async def session_get_latency(
    client: RawClient, sessions: list[str], rate: float, seconds: float
) -> None:
    """Open loop: request i is sent at start + i/rate, whether or not earlier ones answered."""
    n = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int | str, int] = {}
    start = time.perf_counter()

    async def one(i: int) -> None:
        sent = time.perf_counter()
        try:
            code: int | str = await client.get(f"/api/sessions/{sessions[i % len(sessions)]}")
        except (OSError, asyncio.IncompleteReadError) as err:
            code = type(err).__name__
        if code == 200:
            latencies.append(time.perf_counter() - sent)
        statuses[code] = statuses.get(code, 0) + 1

    tasks = []
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i)))
    sent_in = time.perf_counter() - start
    await asyncio.gather(*tasks)
    ms = [x * 1000 for x in latencies] or [float("nan")]
    busy = statuses.get(503, 0) / n
    errors = sum(v for k, v in statuses.items() if k not in (200, 503)) / n
    print(
        f"(a) {len(sessions):>2} sessions, {rate:>5g}/s (sent {n / sent_in:6.1f}/s): "
        f"p50 {pct(ms, 50):6.1f} ms, p99 {pct(ms, 99):7.1f} ms, "
        f"503 {busy:6.1%}, errors {errors:6.1%}  {statuses}",
        flush=True,
    )


async def sse_delivery(
    host: str, port: int, session_id: str, log: EventLog, subscribers: int, rate: float, count: int
) -> None:
    """Each subscriber on a connection of its own, read by hand (httpx's per-line cost, times a
    thousand streams, would put the benchmark's own CPU in the figures)."""
    marker = f"bench-{time.time_ns()}".encode()
    ready = asyncio.Event()
    connected = 0
    refused: list[int] = []
    delays: list[list[float]] = [[] for _ in range(subscribers)]

    async def subscriber(i: int) -> None:
        nonlocal connected
        for _ in range(20):  # a 503 (no database connection yet) says: try again
            reader, writer = await asyncio.open_connection(host, port)
            path = f"/api/sessions/{session_id}/events?after_id={start_id}"
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status == 200:
                break
            refused.append(status)
            writer.close()
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError(f"subscriber {i}: refused 20 times ({status})")
        connected += 1
        if connected == subscribers:
            ready.set()
        try:
            # Chunked: each chunk is whole SSE frames, so lines are never split.
            while line := await reader.readline():
                if not line.startswith(b"data:") or marker not in line:
                    continue
                received = time.time()
                event = json.loads(line[5:])
                created = datetime.fromisoformat(event["created_at"]).timestamp()
                delays[i].append(received - created)
                if event["payload"]["n"] == count - 1:
                    return
        finally:
            writer.close()

    start_id = await latest_id(log, session_id)
    tasks = [asyncio.create_task(subscriber(i)) for i in range(subscribers)]
    try:
        async with asyncio.timeout(60):
            await ready.wait()
    except TimeoutError:
        print(f"(b) SSE: only {connected}/{subscribers} subscribers connected in 60 s")
    await asyncio.sleep(1)  # let every stream reach its follower loop
    began = time.perf_counter()
    for n in range(count):
        await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
        run = marker.decode()
        await log.append(
            [NewEvent(session_id, "bench.tick", {"run": run, "n": n, "pad": "x" * 200})]
        )
    appended_in = time.perf_counter() - began
    done, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    errors = [t.exception() for t in done if not t.cancelled() and t.exception()]
    complete = [d for d in delays if len(d) == count]
    p50s = [pct(d, 50) * 1000 for d in delays if d]
    p95s = [pct(d, 95) * 1000 for d in delays if d]
    print(
        f"(b) SSE: {subscribers} subscribers ({len(refused)} 503s while connecting, retried),"
        f" {count} events at {count / appended_in:.1f}/s;"
        f" {len(complete)} got all, {len(pending)} timed out, {len(errors)} failed"
    )
    if errors:
        print(f"    first error: {errors[0]!r}")
    if p50s:
        print(
            f"    per-subscriber p50: median {statistics.median(p50s):.1f} ms,"
            f" worst {max(p50s):.1f} ms"
        )
        print(
            f"    per-subscriber p95: median {statistics.median(p95s):.1f} ms,"
            f" worst {max(p95s):.1f} ms"
        )


async def latest_id(log: EventLog, session_id: str) -> int:
    latest = 0
    async with contextlib.aclosing(log.follow(session_id, 0, poll_interval=0.05)) as events:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for event in events:
                    latest = event.id
    return latest


async def until(
    client: httpx.AsyncClient, sid: str, done: Callable[[dict[str, Any]], bool]
) -> None:
    """Poll the session (``_task``: whether its first codex task exists) until ``done`` holds."""
    async with asyncio.timeout(60):
        while True:
            session = (await client.get(f"/api/sessions/{sid}")).json()
            task = await client.get(f"/api/codex-tasks/{sid}-builder-1-1")
            if done({**session, "_task": task.status_code == 200}):
                return
            await asyncio.sleep(0.2)


async def main(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="codexflow-api-load-"))
    env = await start_dev_server()
    settings = await scratch_settings(
        root,
        codex_kill_grace_s=1,
        temporal_address=env.client.service_client.config.target_host,
        task_queue="api-load",
        api_token=None,
    )
    model = ScriptedAgentModel(pipeline_script(codex_prompt=CODEX_PROMPT))
    worker_client = await Client.connect(
        settings.temporal_address,
        plugins=[agents_plugin(settings, provider=TestModelProvider(model))],
    )
    port = free_port()
    started = time.perf_counter()
    process = api_process(settings, port)
    engine = make_engine(settings.database_url)
    url = f"http://127.0.0.1:{port}"
    try:
        async with (
            build_worker(worker_client, settings, task_queue=settings.task_queue),
            httpx.AsyncClient(
                base_url=url, headers=HEADERS, limits=httpx.Limits(max_connections=1000)
            ) as client,
        ):
            await wait_up(client, process)
            print(f"the API answered {time.perf_counter() - started:.2f} s after it was started")
            project = (await client.post("/api/projects/", json={"name": "load"})).json()
            sessions: list[str] = []
            for count in args.sessions:
                while len(sessions) < count:
                    created = await client.post(
                        "/api/sessions/",
                        json={
                            "project_id": project["id"],
                            "user_request": "Build a calculator.",
                            "start": True,
                            "options": {"codex_heartbeat_s": 2},
                        },
                    )
                    assert created.status_code == 201, created.text
                    sessions.append(created.json()["id"])
                for sid in sessions:
                    await until(client, sid, lambda c: c.get("live") is not None and c["_task"])
                raw = RawClient("127.0.0.1", port, connections=512)
                for rate in args.rates:
                    await session_get_latency(raw, sessions[:count], rate, args.seconds)
                await raw.close()
            await sse_delivery(
                "127.0.0.1",
                port,
                sessions[0],
                EventLog(engine),
                args.subscribers,
                args.event_rate,
                args.events,
            )
            for sid in sessions:
                await client.post(f"/api/sessions/{sid}/cancel")
            for sid in sessions:
                await until(client, sid, lambda c: c["status"] == "cancelled")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        await engine.dispose()
        await env.shutdown()


def _numbers(value: str) -> list[float]:
    return [float(n) for n in value.split(",")]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", type=_numbers, default=[50.0, 200.0, 1000.0])
    parser.add_argument("--sessions", type=lambda v: [int(n) for n in _numbers(v)], default=[1, 20])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--event-rate", type=float, default=20)
    parser.add_argument("--events", type=int, default=100)
    asyncio.run(main(parser.parse_args()))

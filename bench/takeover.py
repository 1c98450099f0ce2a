"""How long a session waits when its host is lost, by repository size.

    .venv/bin/python bench/takeover.py [--sizes 1000,10000,50000] [--lost-after 5] [--heartbeat 2]

For each size, in this process: a Temporal dev server, a project imported from a generated
repository (100 files a directory), and two worker machines (``worker.py`` subprocesses with their
own identity and disk, sharing the central repositories and the database). A session starts on
host A; while its Builder's codex task runs, A's process group is killed -9 and B is left to carry
on. Printed: from the loss to the session's ``session.moved`` event (the takeover: the codex
activity's heartbeat timeout, the host queue's schedule-to-start timeout ``--lost-after``,
Temporal's sticky-queue timeout for the workflow task, then the rebuild), the rebuild alone (the
``prepare_worktree`` on B: a checkout of the last checkpoint), and whether the run then ended
approved.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from repo_scale import generated, origin_of  # noqa: E402
from sqlalchemy import select  # noqa: E402, I001
from temporalio.client import Client  # noqa: E402
from temporalio.testing import ActivityEnvironment  # noqa: E402

from activities.records import Recorder  # noqa: E402
from activities.repositories import RepositoryActivities  # noqa: E402
from config import Settings  # noqa: E402
from devkit.chaos import SlowBrain  # noqa: E402
from devkit.histories import with_children  # noqa: E402
from devkit.processes import host_settings, scratch_settings, spawn_worker, start_dev_server  # noqa: E402
from devkit.responses_server import ScriptedResponsesServer  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.models import CodexTask, Project  # noqa: E402
from worker import agents_plugin  # noqa: E402
from workflows.pipeline import PipelineWorkflow  # noqa: E402
from workflows.types.pipeline import PipelineInput, PipelineOptions  # noqa: E402
from workflows.types.repository import ImportInput, RepositorySpec  # noqa: E402


async def codex_on(recorder: Recorder, root: Path, within: float = 120) -> None:
    """Until a codex task runs in a worktree under ``root``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with recorder.db() as db:
            rows = (await db.scalars(select(CodexTask).where(CodexTask.status == "running"))).all()
        if any(Path(r.working_directory).is_relative_to(root) for r in rows):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("no codex task ran on host A")


async def prepare_seconds(client: Client, workflow_id: str) -> float:
    """How long the last ``prepare_worktree`` ran (the rebuild on the host that took over)."""
    last = 0.0
    for history in await with_children(client, workflow_id):
        started: dict[int, float] = {}
        prepares: set[int] = set()
        for event in history.events:
            when = event.event_time.ToDatetime().timestamp()
            if event.HasField("activity_task_scheduled_event_attributes"):
                attributes = event.activity_task_scheduled_event_attributes
                if attributes.activity_type.name == "prepare_worktree":
                    prepares.add(event.event_id)
            elif event.HasField("activity_task_started_event_attributes"):
                started[event.activity_task_started_event_attributes.scheduled_event_id] = when
            elif event.HasField("activity_task_completed_event_attributes"):
                scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
                if scheduled in prepares:
                    last = when - started[scheduled]
    return last


async def one(size: int, root: Path, lost_after: float, heartbeat: float) -> dict:
    env = await start_dev_server()
    brain = SlowBrain(0.0, "@fake sleep=4")
    try:
        with ScriptedResponsesServer(brain) as llm:
            base: Settings = await scratch_settings(
                root, temporal_address=env.client.service_client.config.target_host,
                task_queue="takeover", openai_base_url=llm.base_url, openai_api_key=None,
                local_repos=[root],
            )  # fmt: skip
            generated(root / "tree", size)
            origin_of(root / "tree", root / "origin.git")
            engine = make_engine(base.database_url)
            recorder = Recorder(engine)
            async with recorder.db() as db:
                db.add(Project(id="p", name="p", workspace_path="p", status="ready"))
                await db.commit()
            spec = ImportInput(
                project_id="p", repository=RepositorySpec(url=str(root / "origin.git"))
            )
            await ActivityEnvironment().run(
                RepositoryActivities(base, recorder, "unused").import_repository, spec
            )
            a, b = host_settings(base, "host-a", root), host_settings(base, "host-b", root)
            worker_a = spawn_worker(a, log=root / "host-a.log")
            client = await Client.connect(base.temporal_address, plugins=[agents_plugin(base)])
            handle = await client.start_workflow(
                PipelineWorkflow.run,
                PipelineInput(
                    session_id="s1",
                    project_id="p",
                    user_request="Build a calculator.",
                    options=PipelineOptions(
                        codex_heartbeat_s=heartbeat, host_lost_after_s=lost_after
                    ),
                ),  # fmt: skip
                id="session-s1",
                task_queue="takeover",
            )
            await codex_on(recorder, a.workspace_root())
            worker_b = spawn_worker(b, log=root / "host-b.log")
            await asyncio.sleep(3)  # B polls
            lost = time.time()
            os.killpg(worker_a.pid, signal.SIGKILL)
            worker_a.wait()
            try:
                result = await asyncio.wait_for(handle.result(), timeout=300)
            finally:
                worker_b.terminate()
                worker_b.wait(timeout=30)
            moved = [
                e
                for e in await recorder.events.read("s1", limit=10_000)
                if e.kind == "session.moved"
            ]
            rebuild = await prepare_seconds(client, "session-s1")
            await engine.dispose()
            return {
                "files": size,
                "takeover_s": moved[0].created_at.timestamp() - lost if moved else float("nan"),
                "rebuild_s": rebuild,
                "outcome": result.outcome,
            }
    finally:
        await env.shutdown()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--lost-after", type=float, default=5, help="host_lost_after_s")
    parser.add_argument("--heartbeat", type=float, default=2, help="codex_heartbeat_s")
    args = parser.parse_args()
    rows = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        with tempfile.TemporaryDirectory(prefix="codexflow-takeover-") as tmp:
            rows.append(await one(size, Path(tmp), args.lost_after, args.heartbeat))
    print(
        f"takeover after a host is lost (codex heartbeat {args.heartbeat:g} s, "
        f"host_lost_after_s {args.lost_after:g} s)"
    )
    print(f"{'files':>7}{'takeover':>11}{'of it, rebuild':>16}  outcome")
    for r in rows:
        print(f"{r['files']:>7}{r['takeover_s']:>10.1f}s{r['rebuild_s']:>15.1f}s  {r['outcome']}")


if __name__ == "__main__":
    asyncio.run(main())

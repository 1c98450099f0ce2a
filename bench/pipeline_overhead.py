"""Orchestration overhead of a whole pipeline run, with an instant scripted model and instant fake codex.

    .venv/bin/python bench/pipeline_overhead.py [-n 5]

Prints per run: wall time, activities, the time spent inside activities (from the workflow history's
started/completed events), and the overhead per activity: (wall - activity time) / activities.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client  # noqa: E402
from temporalio.openai_agents.testing import TestModelProvider  # noqa: E402

from config import Settings  # noqa: E402
from core.repos import ProjectRepos  # noqa: E402
from devkit.agent_model import ScriptedAgentModel, pipeline_script  # noqa: E402
from devkit.histories import with_children  # noqa: E402
from devkit.processes import scratch_settings, start_dev_server  # noqa: E402
from worker import agents_plugin, build_worker  # noqa: E402
from workflows.pipeline import PipelineWorkflow  # noqa: E402
from workflows.types.pipeline import PipelineInput  # noqa: E402


async def one_run(client: Client, settings: Settings) -> tuple[float, int, float]:
    project = uuid.uuid4().hex[:8]
    await ProjectRepos(settings).create(project)
    session = uuid.uuid4().hex[:8]
    start = time.perf_counter()
    handle = await client.start_workflow(
        PipelineWorkflow.run,
        PipelineInput(
            session_id=session,
            project_id=project,
            user_request="Build a calculator.",
        ),  # fmt: skip
        id=f"session-{session}",
        task_queue="bench",
    )
    await handle.result()
    wall = time.perf_counter() - start
    busy, count = 0.0, 0
    for history in await with_children(client, handle.id):  # the session and its stages
        started: dict[int, float] = {}
        for event in history.events:
            if event.HasField("activity_task_started_event_attributes"):
                started[event.activity_task_started_event_attributes.scheduled_event_id] = (
                    event.event_time.ToDatetime().timestamp()
                )
            elif event.HasField("activity_task_completed_event_attributes"):
                scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
                busy += event.event_time.ToDatetime().timestamp() - started[scheduled]
                count += 1
    return wall, count, busy


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = await scratch_settings(Path(tmp))
        env = await start_dev_server()
        try:
            model = ScriptedAgentModel(pipeline_script(codex_prompt="@fake message=ok"))
            client = await Client.connect(
                env.client.service_client.config.target_host,
                plugins=[agents_plugin(settings, provider=TestModelProvider(model))],
            )
            async with build_worker(client, settings, task_queue="bench"):
                await one_run(client, settings)  # warm-up
                runs = [await one_run(client, settings) for _ in range(n)]
        finally:
            await env.shutdown()
    walls = [w for w, _, _ in runs]
    overheads = [(w - b) / c for w, c, b in runs]
    print(f"pipeline orchestration overhead, instant model + fake codex, n={n} (medians)")
    print(f"  wall time per run         {statistics.median(walls) * 1000:8.0f} ms")
    print(f"  activities per run        {runs[0][1]:8d}")
    print(f"  time inside activities    {statistics.median(b for _, _, b in runs) * 1000:8.0f} ms")
    print(f"  overhead per activity     {statistics.median(overheads) * 1000:8.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=5)
    asyncio.run(main(parser.parse_args().n))

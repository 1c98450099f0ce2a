"""How big a session's workflow histories grow with the length of its stages.

    .venv/bin/python bench/history.py [--calls 10,30,100,300] [--baseline 10,30] [--output-kb 4]

One session per N, on a Temporal dev server with an in-process worker and the fake codex: each
of the four stages' agents calls ``run_codex`` N times, every codex run answering with about
``--output-kb`` KB (what the model then reads back), then reports. Printed per run: the history
summed over all of the session's workflows (the session and one child per stage), its events, the
largest single workflow's history, bytes per model call, bytes kept outside history (in the
records database, before and after compression), the worker process's RSS, and wall time.
``--baseline`` sizes run again in the same process with External Storage off (payloads inline,
as before), for the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents.items import ModelResponse  # noqa: E402
from openai.types.responses import ResponseFunctionToolCall  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.openai_agents.testing import ResponseBuilders, TestModelProvider  # noqa: E402

from config import Settings  # noqa: E402
from core.repos import ProjectRepos  # noqa: E402
from core.vocabulary import stage_workflow_id  # noqa: E402
from devkit.agent_model import ScriptedAgentModel, Turn, report  # noqa: E402
from devkit.processes import scratch_settings, start_dev_server  # noqa: E402
from store.db import make_engine  # noqa: E402
from store.models import StoredPayload, StoredPayloadRef  # noqa: E402
from store.temporal import connect  # noqa: E402
from worker import agents_plugin, build_worker  # noqa: E402
from workflows.pipeline import PipelineWorkflow  # noqa: E402
from workflows.types.pipeline import PipelineInput, PipelineOptions, PipelineResult  # noqa: E402

REPORTS: dict[str, dict[str, Any]] = {
    "planner": {
        "summary": "A plan.",
        "requirements": ["r"],
        "steps": ["s"],
        "agents_md_saved": True,
    },
    "builder": {
        "summary": "Built.",
        "steps_completed": ["s"],
        "files_changed": ["f.py"],
        "deviations": [],
    },
    "qa_qc": {"verdict": "PASS", "summary": "QA.", "issues": [], "tests": "1 passed"},
    "prod_ready": {
        "verdict": "APPROVED",
        "summary": "Ready.",
        "blocking": [],
        "recommendations": [],
    },
}


def long_stages(calls: int, output_kb: int):
    """Each agent calls codex ``calls`` times (a distinct prompt each time), then reports."""

    def play(turn: Turn) -> ModelResponse:
        if turn.step < calls:
            prompt = f"{turn.role} task {turn.step}\n@fake message_bytes={output_kb * 1000}\n@fake tokens=0,0"
            return ResponseBuilders.model_response(
                ResponseFunctionToolCall(
                    arguments=json.dumps({"prompt": prompt}),
                    call_id=f"call_{turn.role}_{turn.step}",
                    name="run_codex",
                    type="function_call",
                    id=f"fc_{turn.role}_{turn.step}",
                    status="completed",
                )
            )
        return report(**REPORTS[turn.role])

    return play


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_session(address: str, settings: Settings, calls: int, output_kb: int, stored: bool):
    model = ScriptedAgentModel(long_stages(calls, output_kb))
    plugin = agents_plugin(settings, provider=TestModelProvider(model))
    if stored:
        client = await connect(
            settings.model_copy(update={"temporal_address": address}), plugins=[plugin]
        )
    else:
        client = await Client.connect(address, plugins=[plugin])
    session = uuid.uuid4().hex[:8]
    queue = f"history-{session}"
    started = time.perf_counter()
    async with build_worker(client, settings, task_queue=queue):
        handle = await client.start_workflow(
            PipelineWorkflow.run,
            PipelineInput(
                session_id=session,
                project_id="p1",
                user_request="Make the change, one small codex task at a time.",
                options=PipelineOptions(max_agent_turns=calls + 5, max_repair_loops=0),
            ),
            id=f"session-{session}",
            task_queue=queue,
        )
        result: PipelineResult = await handle.result()
    wall = time.perf_counter() - started
    assert result.outcome == "approved", result.summary
    ids = [handle.id] + [stage_workflow_id(session, r.stage, r.iteration) for r in result.stages]
    sizes: list[int] = []
    events = 0
    for wid in ids:
        history = await client.get_workflow_handle(wid).fetch_history()
        sizes.append(sum(e.ByteSize() for e in history.events))
        events += len(history.events)
    engine = make_engine(settings.database_url)
    async with engine.connect() as db:
        mine = select(StoredPayloadRef.digest).where(
            StoredPayloadRef.workflow_id.like(f"session-{session}%")
        )
        raw, packed = (
            await db.execute(
                select(func.coalesce(func.sum(StoredPayload.size), 0),
                       func.coalesce(func.sum(func.length(StoredPayload.data)), 0))
                .where(StoredPayload.digest.in_(mine))
            )
        ).one()  # fmt: skip
    await engine.dispose()
    return {
        "calls": calls,
        "model_calls": len(model.calls),
        "history": sum(sizes),
        "largest": max(sizes),
        "events": events,
        "per_call": sum(sizes) / len(model.calls),
        "stored": raw,
        "packed": packed,
        "rss": rss_mb(),
        "wall": wall,
    }


def row(label: str, r: dict[str, Any]) -> str:
    return (
        f"{label:>9} {r['calls']:>5} {r['model_calls']:>6} {r['history'] / 1e6:>8.2f} MB "
        f"{r['largest'] / 1e6:>7.2f} MB {r['events']:>7} {r['per_call'] / 1e3:>7.1f} KB "
        f"{r['stored'] / 1e6:>8.1f} MB {r['packed'] / 1e6:>7.1f} MB {r['rss']:>6.0f} MB "
        f"{r['wall']:>6.0f} s"
    )


async def main(calls: list[int], baseline: list[int], output_kb: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = await scratch_settings(Path(tmp))
        await ProjectRepos(settings).create("p1")
        env = await start_dev_server()
        address = env.client.service_client.config.target_host
        try:
            print(
                f"one session, 4 stages, N codex calls per stage, ~{output_kb} KB per codex answer"
            )
            print(f"{'':>9} {'N':>5} {'model':>6} {'history':>11} {'largest':>10} {'events':>7} "
                  f"{'per call':>10} {'stored':>11} {'packed':>10} {'RSS':>9} {'wall':>8}")  # fmt: skip
            results = {}
            for n in calls:
                results[n] = await one_session(address, settings, n, output_kb, stored=True)
                print(row("stored", results[n]), flush=True)
            for n in baseline:
                inline = await one_session(address, settings, n, output_kb, stored=False)
                print(row("inline", inline), flush=True)
                if n in results:
                    ratio = inline["history"] / results[n]["history"]
                    print(f"{'':>9} {n:>5}: inline history is {ratio:.1f}x the stored one")
        finally:
            await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="10,30,100,300")
    parser.add_argument("--baseline", default="10,30")
    parser.add_argument("--output-kb", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(
        main(
            [int(n) for n in args.calls.split(",")],
            [int(n) for n in args.baseline.split(",") if n],
            args.output_kb,
        )
    )

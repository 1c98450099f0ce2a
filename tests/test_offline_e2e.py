"""A whole pipeline run offline: the real openai client (agents) and the real codex binary both talk
to one local scripted server, and the workspace ends with a working program whose tests pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from config import Settings
from devkit.brain import CALC_PY, PipelineBrain, count_by_role
from devkit.responses_server import ScriptedResponsesServer
from store.temporal import connect
from tests.helpers.temporal import temporal_address
from worker import agents_plugin, build_worker
from workflows.pipeline import PipelineWorkflow
from workflows.types.pipeline import PipelineInput, PipelineOptions, PipelineResult


async def test_offline_pipeline_with_real_codex(
    temporal_dev: WorkflowEnvironment,
    settings: Settings,
    task_queue: str,
    project_id: str,
    session_id: str,
    worktree: Path,
) -> None:
    with ScriptedResponsesServer(PipelineBrain()) as llm:
        settings = llm.serving(
            settings,
            temporal_address=temporal_address(temporal_dev),
            codex_bin=None,  # the real binary from node_modules
        )
        # The agents' model: OpenAIResponsesModel over HTTP.
        client = await connect(settings, plugins=[agents_plugin(settings)])
        async with build_worker(client, settings, task_queue=task_queue):
            result: PipelineResult = await client.execute_workflow(
                PipelineWorkflow.run,
                PipelineInput(
                    session_id=session_id,
                    project_id=project_id,
                    user_request="Build a small calculator module with unit tests.",
                    options=PipelineOptions(agent_model=settings.agent_model),
                ),
                id=f"session-{session_id}",
                task_queue=task_queue,
            )

    assert result.outcome == "approved"
    assert [r.stage.value for r in result.stages] == ["planner", "builder", "qa_qc", "prod_ready"]
    assert result.agents_md and "## Acceptance criteria" in result.agents_md
    assert (worktree / "calc.py").read_text() == CALC_PY
    tests = subprocess.run(  # noqa: ASYNC221 - the run is over; nothing else is waiting
        [sys.executable, "-m", "unittest", "-v"], cwd=worktree, capture_output=True, text=True
    )
    assert tests.returncode == 0 and "OK" in tests.stderr
    counts = count_by_role(llm.requests)
    assert counts["codex"] > 0 and all(
        counts[role] >= 2 for role in ("planner", "builder", "qa_qc", "prod_ready")
    )
    assert result.usage.model.input_tokens > 0 and result.usage.codex.input_tokens > 0

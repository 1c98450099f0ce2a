"""What an operator sees of a run in Temporal (the Web UI reads the same): the list says what the
run is, waiting and outcome are filterable, the details read cleanly and link back."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client

from config import Settings
from store.temporal import connect
from tests.helpers.api import client_of
from tests.helpers.sessions import FAST, Serve, new_project, new_session, poll


async def _listed(client: Client, query: str, workflow_id: str) -> None:
    async with asyncio.timeout(30):  # visibility catches up within a second or so
        while True:
            if workflow_id in [w.id async for w in client.list_workflows(query)]:
                return
            await asyncio.sleep(0.3)


async def test_the_run_as_operators_see_it(app_settings: Settings, serve: Serve) -> None:
    await serve()
    temporal = await connect(app_settings)
    async with client_of(app_settings) as api:
        project_id = await new_project(api)
        options = {**FAST, "gates": ["planner"]}
        sid = (await new_session(api, project_id, start=True, options=options))["id"]
        workflow_id = f"session-{sid}"
        await poll(api, f"/api/sessions/{sid}", _awaiting("planner"))
        await _listed(temporal, 'CodexflowWaiting = "gate"', workflow_id)
        await _listed(temporal, 'CodexflowProjectName = "calc"', workflow_id)

        handle = temporal.get_workflow_handle(workflow_id)
        described = await handle.describe()
        assert await described.static_summary() == "calc: Build a calculator."
        details = await described.static_details()
        assert details and "gates: `planner`" in details and "Build a calculator." in details

        await api.post(
            f"/api/sessions/{sid}/review", json={"stage": "planner", "decision": "approve"}
        )
        await poll(api, f"/api/sessions/{sid}", lambda s: s["status"] == "completed")
        await _listed(temporal, 'CodexflowOutcome = "approved"', workflow_id)
        listed = [w.id async for w in temporal.list_workflows("CodexflowWaiting IS NOT NULL")]
        assert workflow_id not in listed

        text = await _current_details(temporal, workflow_id)
        assert "outcome **approved**" in text and "- `planner` #1" in text
        assert f"/api/sessions/{sid})" in text and "|" not in text  # a list, no table


async def _current_details(client: Client, workflow_id: str) -> str:
    """What the Web UI shows as the run's current details (the SDK's metadata query)."""
    metadata = await client.get_workflow_handle(workflow_id).query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return metadata.current_details


def _awaiting(stage: str):
    def check(session: dict[str, Any]) -> bool:
        return ((session.get("live") or {}).get("awaiting") or {}).get("stage") == stage

    return check

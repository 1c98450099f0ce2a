"""A session's histories: its own workflow's and those of its children (one per stage), for the
tests and benchmarks that read what Temporal recorded."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHistory

__all__ = ["with_children"]


async def with_children(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The workflow's history, then its children's (and theirs), in the order they started."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    histories = [history]
    for event in history.events:
        if event.HasField("child_workflow_execution_started_event_attributes"):
            child = event.child_workflow_execution_started_event_attributes.workflow_execution
            histories += await with_children(client, child.workflow_id)
    return histories

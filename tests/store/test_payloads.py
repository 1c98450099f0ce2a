"""Payloads kept out of workflow history, in the records database (SQLite and PostgreSQL): what
history holds instead, what is stored once, what every client reads back, and what is swept."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.converter import StorageDriverStoreContext, StorageDriverWorkflowInfo
from temporalio.testing import WorkflowEnvironment

from config import Settings
from store.models import StoredPayload, StoredPayloadRef, utcnow
from store.payloads import DatabasePayloads, PayloadMissing, payloads_of, resolve, sweep
from store.temporal import connect
from tests.helpers.temporal import temporal_address


def _payload(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


def _for(workflow_id: str) -> StorageDriverStoreContext:
    return StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace="default", id=workflow_id)
    )


async def _count(driver: DatabasePayloads, model: type) -> int:
    async with driver.engine().connect() as db:
        return (await db.execute(select(func.count()).select_from(model))).scalar_one()


async def test_identical_payloads_are_stored_once_and_read_back(database_url: str) -> None:
    driver = DatabasePayloads(database_url)
    try:
        conversation = "the conversation so far " * 2000  # 48 KB, repetitive like one
        first = await driver.store(_for("session-a"), [_payload(conversation)])
        again = await driver.store(_for("session-a.builder-1"), [_payload(conversation)])
        other = await driver.store(_for("session-a"), [_payload("something else " * 500)])

        assert first == again and first != other
        assert await _count(driver, StoredPayload) == 2
        assert await _count(driver, StoredPayloadRef) == 3  # two workflows refer to the first
        async with driver.engine().connect() as db:
            stored = (await db.execute(select(func.sum(func.length(StoredPayload.data))))).scalar()
        assert stored < len(conversation) // 20  # compressed

        (back,) = await driver.retrieve(None, first)  # type: ignore[arg-type]
        assert back.data.decode() == conversation and back.metadata["encoding"] == b"json/plain"
        with pytest.raises(PayloadMissing, match="is gone"):
            await driver.retrieve(None, [type(first[0])({"digest": "0" * 64})])  # type: ignore[arg-type]
    finally:
        await driver.close()


async def test_history_holds_a_reference_that_every_client_resolves(
    temporal_dev: WorkflowEnvironment, settings: Settings
) -> None:
    settings = settings.model_copy(update={"temporal_address": temporal_address(temporal_dev)})
    client = await connect(settings)
    big = {"request": "x" * 50_000}
    workflow_id = f"payloads-{uuid.uuid4().hex[:8]}"
    # Nothing polls this queue: the workflow just stays, with its input in history.
    handle = await client.start_workflow(
        "NoSuchWorkflow", big, id=workflow_id, task_queue=f"nobody-{workflow_id}"
    )
    try:
        history = await handle.fetch_history()
        started = next(
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        )
        (reference,) = started.workflow_execution_started_event_attributes.input.payloads
        assert reference.ByteSize() < 500  # not the 50 KB
        assert b"x" * 100 not in reference.SerializeToString()

        # Another process (the API, the CLI) connecting the same way reads the payload back.
        (resolved,) = await resolve(payloads_of(await connect(settings)), [reference])
        assert (await client.data_converter.decode([resolved]))[0] == big
        (described,) = await client.data_converter.decode([reference])
        assert described == big
    finally:
        await handle.terminate()
        await payloads_of(client).close()


async def test_a_sweep_drops_payloads_of_workflows_temporal_forgot(
    temporal_dev: WorkflowEnvironment, settings: Settings
) -> None:
    settings = settings.model_copy(update={"temporal_address": temporal_address(temporal_dev)})
    client = await connect(settings)
    driver = payloads_of(client)
    known = f"known-{uuid.uuid4().hex[:8]}"
    handle = await client.start_workflow("NoSuchWorkflow", id=known, task_queue=f"nobody-{known}")
    try:
        shared = _payload("shared " * 1000)
        await driver.store(_for(known), [shared, _payload("kept " * 1000)])
        await driver.store(_for("session-forgotten"), [shared, _payload("gone " * 1000)])
        await driver.store(_for("session-new"), [_payload("too young to sweep " * 100)])

        # Within the grace period nothing goes, even for a workflow Temporal does not know.
        assert await sweep(driver, client, grace=timedelta(hours=1)) == (0, 0)

        async with driver.engine().begin() as db:
            old = utcnow() - timedelta(hours=2)
            for model in (StoredPayload, StoredPayloadRef):
                await db.execute(
                    update(model)
                    .where(model.touched_at > old)  # type: ignore[attr-defined]
                    .values(touched_at=old)
                )
            await db.execute(
                update(StoredPayloadRef)
                .where(StoredPayloadRef.workflow_id == "session-new")
                .values(touched_at=utcnow())
            )
        refs, payloads = await sweep(driver, client, grace=timedelta(hours=1))

        # The forgotten workflow's references go, and the payload only it referred to; the
        # shared one stays for the workflow Temporal still has, as does the young one.
        assert (refs, payloads) == (2, 1)
        async with driver.engine().connect() as db:
            owners = set((await db.scalars(select(StoredPayloadRef.workflow_id))).all())
        assert owners == {known, "session-new"}
        assert await _count(driver, StoredPayload) == 3
    finally:
        await handle.terminate()
        await driver.close()

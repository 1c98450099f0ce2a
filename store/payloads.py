"""Large payloads kept out of workflow history: Temporal's External Storage with the records
database as its store.

Above ``CODEXFLOW_PAYLOAD_THRESHOLD_BYTES`` a payload (a model call's input is the whole
conversation so far) is written here and history holds a small reference to it instead.
Payloads are content-addressed (the SHA-256 of the serialized payload), so the conversation
prefix a stage's model calls share, or a retried activity's input, is stored once; they are
compressed, and each is referenced by the workflows it was stored for. :func:`sweep` drops the
references of workflows Temporal no longer knows (their retention has passed), then the payloads
nothing references.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import zlib
from collections.abc import Sequence
from datetime import timedelta

from google.protobuf import json_format
from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.api.common.v1 import Payload
from temporalio.api.sdk.v1.external_storage_pb2 import ExternalStorageReference
from temporalio.client import Client
from temporalio.converter import (
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)
from temporalio.service import RPCError, RPCStatusCode

from config import Settings
from store.db import make_engine
from store.models import StoredPayload, StoredPayloadRef, utcnow

__all__ = [
    "DRIVER_NAME",
    "DatabasePayloads",
    "external_storage",
    "payloads_of",
    "resolve",
    "sweep",
    "sweeping",
]

log = logging.getLogger("codexflow.payloads")

DRIVER_NAME = "codexflow-db"
_REFERENCE_TYPE = ExternalStorageReference.DESCRIPTOR.full_name.encode()
_UNKNOWN_OWNER_KEPT = timedelta(days=7)  # payloads stored outside any workflow (none today)


class PayloadMissing(LookupError):
    """A reference whose payload is no longer stored."""


class DatabasePayloads(StorageDriver):
    """The storage driver: ``stored_payloads`` (digest → compressed payload) and
    ``stored_payload_refs`` (digest, workflow id)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engines: dict[asyncio.AbstractEventLoop, AsyncEngine] = {}

    def name(self) -> str:
        return DRIVER_NAME

    def engine(self) -> AsyncEngine:
        # An async engine belongs to the loop it was first used on (the CLI runs several).
        loop = asyncio.get_running_loop()
        if loop not in self._engines:
            self._engines[loop] = make_engine(self.database_url)
        return self._engines[loop]

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        target = context.target
        owner = target.id if isinstance(target, StorageDriverWorkflowInfo) and target.id else ""
        now = utcnow()
        digests: list[str] = []
        rows: dict[str, dict[str, object]] = {}
        for payload in payloads:
            data = payload.SerializeToString(deterministic=True)
            digest = hashlib.sha256(data).hexdigest()
            digests.append(digest)
            rows[digest] = {
                "digest": digest,
                "size": len(data),
                "data": zlib.compress(data, 6),
                "touched_at": now,
            }
        engine = self.engine()
        insert = pg_insert if engine.dialect.name == "postgresql" else sqlite_insert
        # Touched when stored again, so a sweep running meanwhile leaves it.
        async with engine.begin() as db:
            stmt = insert(StoredPayload)
            await db.execute(
                stmt.on_conflict_do_update(
                    index_elements=["digest"], set_={"touched_at": stmt.excluded.touched_at}
                ),
                list(rows.values()),
            )
            stmt = insert(StoredPayloadRef)
            await db.execute(
                stmt.on_conflict_do_update(
                    index_elements=["digest", "workflow_id"],
                    set_={"touched_at": stmt.excluded.touched_at},
                ),
                [{"digest": d, "workflow_id": owner, "touched_at": now} for d in rows],
            )
        return [StorageDriverClaim({"digest": digest}) for digest in digests]

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        digests = [claim.claim_data["digest"] for claim in claims]
        async with self.engine().connect() as db:
            rows = await db.execute(
                select(StoredPayload.digest, StoredPayload.data).where(
                    StoredPayload.digest.in_(set(digests))
                )
            )
            found = {digest: data for digest, data in rows}
        missing = [d for d in digests if d not in found]
        if missing:
            raise PayloadMissing(
                f"stored payload {missing[0][:12]} is gone (its workflow's retention has passed?)"
            )
        return [Payload.FromString(zlib.decompress(found[d])) for d in digests]

    async def close(self) -> None:
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            await engine.dispose()


def external_storage(settings: Settings) -> ExternalStorage:
    """The converter's External Storage: payloads past the threshold go to the records database."""
    return ExternalStorage(
        drivers=[DatabasePayloads(settings.database_url)],
        payload_size_threshold=settings.payload_threshold_bytes,
    )


def payloads_of(client: Client) -> DatabasePayloads:
    """The payload store of a client made by ``store.temporal.connect``."""
    storage = client.data_converter.external_storage
    driver = storage.drivers[0] if storage else None
    assert isinstance(driver, DatabasePayloads), "a client from store.temporal.connect"
    return driver


async def resolve(driver: DatabasePayloads, payloads: Sequence[Payload]) -> list[Payload]:
    """``payloads`` with every reference to a stored payload replaced by the payload (what the
    Temporal Web UI's codec endpoint answers); other payloads as they are."""
    out = list(payloads)
    wanted: list[tuple[int, StorageDriverClaim]] = []
    for index, payload in enumerate(payloads):
        meta = payload.metadata
        if meta.get("encoding") != b"json/protobuf" or meta.get("messageType") != _REFERENCE_TYPE:
            continue
        reference = json_format.Parse(payload.data, ExternalStorageReference())
        if reference.driver_name == DRIVER_NAME:
            wanted.append((index, StorageDriverClaim(dict(reference.claim_data))))
    if wanted:
        found = await driver.retrieve(StorageDriverRetrieveContext(), [c for _, c in wanted])
        for (index, _), payload in zip(wanted, found, strict=True):
            out[index] = payload
    return out


async def sweep(driver: DatabasePayloads, client: Client, grace: timedelta) -> tuple[int, int]:
    """Forget the payloads of workflows past their retention. A reference goes once Temporal
    no longer knows its workflow; a payload once nothing references it. Payloads younger than
    ``grace`` stay (a workflow may be starting). Returns (references, payloads) deleted."""
    now = utcnow()
    engine = driver.engine()
    async with engine.connect() as db:
        owners = (
            await db.scalars(
                select(StoredPayloadRef.workflow_id)
                .where(StoredPayloadRef.touched_at < now - grace)
                .distinct()
            )
        ).all()
    gone = [owner for owner in owners if owner and not await _known(client, owner)]
    refs_deleted = payloads_deleted = 0
    async with engine.begin() as db:
        for start in range(0, len(gone), 500):
            result = await db.execute(
                delete(StoredPayloadRef).where(
                    StoredPayloadRef.workflow_id.in_(gone[start : start + 500])
                )
            )
            refs_deleted += result.rowcount
        result = await db.execute(
            delete(StoredPayloadRef).where(
                StoredPayloadRef.workflow_id == "",
                StoredPayloadRef.touched_at < now - _UNKNOWN_OWNER_KEPT,
            )
        )
        refs_deleted += result.rowcount
        result = await db.execute(
            delete(StoredPayload).where(
                StoredPayload.touched_at < now - grace,
                ~exists().where(StoredPayloadRef.digest == StoredPayload.digest),
            )
        )
        payloads_deleted = result.rowcount
    return refs_deleted, payloads_deleted


async def _known(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as err:
        if err.status is RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def sweeping(client: Client, interval: timedelta, grace: timedelta = timedelta(hours=1)):
    """:func:`sweep` every ``interval``, until cancelled (the worker runs it)."""
    driver = payloads_of(client)
    while True:
        await asyncio.sleep(interval.total_seconds())
        try:
            refs, payloads = await sweep(driver, client, grace)
        except Exception:  # the next sweep tries again
            log.exception("sweeping stored payloads failed")
            continue
        if refs or payloads:
            log.info("stored payloads: %d references and %d payloads swept", refs, payloads)

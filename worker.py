"""The codexflow worker: registers workflows and activities with the OpenAI Agents plugin.

``python worker.py`` (or ``codexflow worker``) runs it until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from agents import Model, ModelProvider, set_tracing_disabled
from agents.models.openai_provider import OpenAIProvider
from openai import AsyncOpenAI
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.openai_agents import ModelActivityParameters, OpenAIAgentsPlugin
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from activities.registry import worker_activities
from config import Settings, get_settings
from core.vocabulary import host_task_queue
from observability.logs import configure_logging
from observability.metrics import MeteredModelProvider, worker_runtime
from store.db import make_engine
from store.payloads import payloads_of, sweeping
from store.schema import SchemaOutOfDate, check_schema
from store.temporal import connect
from workflows.chat import AgentChatWorkflow
from workflows.codex_task import CodexTaskWorkflow
from workflows.pipeline import PipelineWorkflow
from workflows.repository import DeliveryWorkflow, ImportProjectWorkflow
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES
from workflows.stage import StageWorkflow

__all__ = ["WORKFLOWS", "agents_plugin", "build_worker", "ensure_search_attributes", "main"]

log = logging.getLogger("codexflow.worker")

WORKFLOWS = [
    PipelineWorkflow,
    StageWorkflow,
    CodexTaskWorkflow,
    AgentChatWorkflow,
    ImportProjectWorkflow,
    DeliveryWorkflow,
]


class _NoModelConfigured(ModelProvider):
    """Stands in when no model is configured, so codex-only work runs and agents fail clearly."""

    def get_model(self, model_name: str | None) -> Model:
        raise ApplicationError(
            "no model configured for the agents: set OPENAI_API_KEY, or CODEXFLOW_OPENAI_BASE_URL "
            "for an OpenAI-compatible server",
            type="ModelNotConfigured",
            non_retryable=True,
        )


def model_provider(settings: Settings) -> ModelProvider:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key and not settings.openai_base_url:
        return _NoModelConfigured()
    # Temporal retries model calls as activities; the client must not retry on its own as well.
    client = AsyncOpenAI(api_key=key or "unused", base_url=settings.openai_base_url, max_retries=0)
    return OpenAIProvider(openai_client=client, use_responses=True)


def agents_plugin(settings: Settings, provider: ModelProvider | None = None) -> OpenAIAgentsPlugin:
    """The OpenAI Agents plugin: every model call becomes a retried, heartbeating activity.

    The provider (``provider``, e.g. a scripted test model, or the configured one) is metered:
    each model call and its tokens are counted (``observability.metrics``).
    """
    if not settings.openai_api_key or settings.openai_base_url:
        # Traces would go to OpenAI: only with a real key talking to the real service.
        set_tracing_disabled(True)
        os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    return OpenAIAgentsPlugin(
        model_params=ModelActivityParameters(
            start_to_close_timeout=timedelta(minutes=5),
            # Without it the plugin does not heartbeat, and a call lost with its worker is only
            # retried after the whole 5 minutes (found by the chaos suite).
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=2),
                maximum_interval=timedelta(minutes=1),
                maximum_attempts=5,
            ),
        ),
        model_provider=MeteredModelProvider(provider or model_provider(settings)),
    )


async def ensure_search_attributes(client: Client) -> None:
    """Register codexflow's search attributes where missing (a fresh cluster, the test server).

    The pipeline upserts them, so a cluster without them would fail every run's first task.
    One at a time, because an attribute that already exists fails the whole request.
    """
    for key in SEARCH_ATTRIBUTES:
        request = AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
        )
        try:
            await client.operator_service.add_search_attributes(request)
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:  # e.g. Temporal Cloud: admins only
                log.warning("could not register search attribute %s: %s", key.name, err)


@asynccontextmanager
async def build_worker(
    client: Client, settings: Settings, task_queue: str | None = None
) -> AsyncIterator[Worker]:
    """A running worker: every workflow and activity on the shared task queue, and the
    activities again on this machine's own queue (``<queue>@<worker_host>``), where those that
    touch a worktree made here are sent; with the records database opened for it."""
    shared = task_queue or settings.task_queue
    host_queue = host_task_queue(shared, settings.worker_host)
    engine = make_engine(settings.database_url, **settings.db_pool())
    activities = worker_activities(settings, engine, host_queue)
    worker = Worker(
        client,
        task_queue=shared,
        workflows=WORKFLOWS,
        activities=activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    on_host = Worker(
        client,
        task_queue=host_queue,
        activities=activities,
        graceful_shutdown_timeout=timedelta(seconds=10),
    )
    try:
        async with worker, on_host:
            yield worker
    finally:
        await engine.dispose()


async def main(settings: Settings | None = None, upgrade: bool = False) -> None:
    settings = settings or get_settings()
    await check_schema(settings, upgrade=upgrade)
    try:
        runtime = worker_runtime(settings)
    except ValueError as err:  # "Failed starting Prometheus exporter: Address already in use"
        raise SystemExit(
            f"codexflow worker: CODEXFLOW_WORKER_METRICS_ADDRESS="
            f"{settings.worker_metrics_address}: {err}"
        ) from None
    if settings.worker_metrics_address:
        log.info("metrics on http://%s/metrics", settings.worker_metrics_address)
    client = await connect(settings, plugins=[agents_plugin(settings)], runtime=runtime)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await ensure_search_attributes(client)
    log.info(
        "worker on %s, task queues %s and %s",
        settings.temporal_address,
        settings.task_queue,
        host_task_queue(settings.task_queue, settings.worker_host),
    )
    sweeper = asyncio.create_task(
        sweeping(client, timedelta(seconds=settings.payload_sweep_interval_s))
    )
    try:
        async with build_worker(client, settings):
            await stop.wait()
    finally:
        sweeper.cancel()
        await payloads_of(client).close()


def run(upgrade: bool = False) -> None:
    configure_logging(get_settings())
    try:
        asyncio.run(main(upgrade=upgrade))
    except SchemaOutOfDate as err:
        raise SystemExit(
            f"codexflow worker: {err} (or start the worker with --upgrade-db)"
        ) from None


if __name__ == "__main__":
    run()

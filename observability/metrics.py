"""The worker's metrics, recorded through the Temporal SDK's metric meter.

With ``CODEXFLOW_WORKER_METRICS_ADDRESS`` set, the worker's client runs on a Temporal runtime that
serves Prometheus (``worker_runtime``), so one ``/metrics`` endpoint carries the SDK's own metrics
(``temporal_*``) and codexflow's (``codexflow_*``). Activities record through
``activity.metric_meter()``: that runtime's meter (labelled with namespace, task_queue and
activity_type), a no-op one when metrics are off or outside an activity.

Facts about the SDK meter that shape this module:

- the runtime's ``metric_prefix`` applies to the SDK's metrics only, so ours carry ``codexflow_``
  in their names;
- histograms default to millisecond-sized buckets (50 … 10000) whatever their unit, so our
  seconds histograms get bucket overrides on the runtime (``HISTOGRAM_BUCKETS``);
- gauges can only be set, so the active codex processes are counted here and the gauge set.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from agents import Model, ModelProvider, ModelResponse
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from config import Settings

__all__ = [
    "HISTOGRAM_BUCKETS",
    "MeteredModelProvider",
    "codex_finished",
    "codex_process",
    "session_finished",
    "session_started",
    "stage_finished",
    "worker_runtime",
]

SESSIONS_STARTED = "codexflow_sessions_started_total"
SESSIONS_FINISHED = "codexflow_sessions_finished_total"
STAGE_DURATION = "codexflow_stage_duration_seconds"
CODEX_DURATION = "codexflow_codex_task_duration_seconds"
CODEX_EXITS = "codexflow_codex_exits_total"
CODEX_ACTIVE = "codexflow_codex_active_processes"
MODEL_CALLS = "codexflow_model_calls_total"
MODEL_TOKENS = "codexflow_model_tokens_total"

# Stages and codex tasks take seconds to tens of minutes (codex's timeout is 30 min by default).
_SECONDS: list[float] = [1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600]
HISTOGRAM_BUCKETS: dict[str, list[float]] = {STAGE_DURATION: _SECONDS, CODEX_DURATION: _SECONDS}


def worker_runtime(settings: Settings) -> Runtime:
    """The worker's Temporal runtime: Core's logs go through Python logging (so they follow
    ``CODEXFLOW_LOG_FORMAT``), and Prometheus is served on ``worker_metrics_address`` when set.

    Raises ValueError when the address is malformed or taken.
    """
    metrics = None
    if settings.worker_metrics_address:
        metrics = PrometheusConfig(
            bind_address=settings.worker_metrics_address,
            histogram_bucket_overrides=HISTOGRAM_BUCKETS,
        )
    core_logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    return Runtime(telemetry=TelemetryConfig(logging=core_logs, metrics=metrics))


def _meter() -> MetricMeter:
    return activity.metric_meter() if activity.in_activity() else MetricMeter.noop


# --- sessions and stages (record activities; called only when the change is new) ----------------


def session_started() -> None:
    _meter().create_counter(SESSIONS_STARTED, "pipeline sessions started").add(1)


def session_finished(status: str, outcome: str | None) -> None:
    _meter().create_counter(
        SESSIONS_FINISHED, "pipeline sessions finished, by status and outcome"
    ).add(1, {"status": status, "outcome": outcome or "none"})


def stage_finished(stage: str, status: str, seconds: float) -> None:
    _meter().create_histogram_float(
        STAGE_DURATION, "stage iterations (one agent's turn at a stage), by stage and status", "s"
    ).record(max(seconds, 0.0), {"stage": stage, "status": status})


# --- codex ----------------------------------------------------------------------------------------

# Running codex processes in this worker process, by (namespace, task queue) like the gauge's labels.
_active_codex: Counter[tuple[str, str]] = Counter()


@contextmanager
def codex_process() -> Iterator[None]:
    """Counts a running codex process for ``codexflow_codex_active_processes`` while inside."""
    meter = _meter()
    info = activity.info() if activity.in_activity() else None
    key = (info.namespace, info.task_queue) if info else ("", "")
    gauge = meter.create_gauge(CODEX_ACTIVE, "codex processes running in this worker process")
    _active_codex[key] += 1
    gauge.set(_active_codex[key])
    try:
        yield
    finally:
        _active_codex[key] -= 1
        gauge.set(_active_codex[key])


def codex_finished(outcome: str, exit_code: int | None, seconds: float) -> None:
    """One codex run (an attempt) ended: ``completed``, ``failed``, ``timeout`` or ``cancelled``."""
    meter = _meter()
    meter.create_counter(CODEX_EXITS, "codex runs ended, by exit code and outcome").add(
        1, {"exit_code": "none" if exit_code is None else str(exit_code), "outcome": outcome}
    )
    meter.create_histogram_float(CODEX_DURATION, "codex run durations, by outcome", "s").record(
        max(seconds, 0.0), {"outcome": outcome}
    )


# --- model calls ------------------------------------------------------------------------------------


def _model_call(model: str, outcome: str, input_tokens: int = 0, output_tokens: int = 0) -> None:
    meter = _meter()
    meter.create_counter(MODEL_CALLS, "agent model calls, by model and outcome").add(
        1, {"model": model, "outcome": outcome}
    )
    tokens = meter.create_counter(MODEL_TOKENS, "agent model tokens, by model and kind")
    tokens.add(max(input_tokens, 0), {"model": model, "kind": "input"})
    tokens.add(max(output_tokens, 0), {"model": model, "kind": "output"})


class MeteredModel(Model):
    """Counts each call of ``inner`` and its tokens; everything else is ``inner``'s."""

    def __init__(self, inner: Model, name: str) -> None:
        self.inner = inner
        self.name = name

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        try:
            response = await self.inner.get_response(*args, **kwargs)
        except BaseException:
            _model_call(self.name, "error")
            raise
        usage = response.usage
        _model_call(self.name, "ok", usage.input_tokens, usage.output_tokens)
        return response

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        input_tokens = output_tokens = 0
        outcome = "error"
        try:
            async for event in self.inner.stream_response(*args, **kwargs):
                # The usage arrives with the stream's last event, response.completed.
                usage = getattr(getattr(event, "response", None), "usage", None)
                if getattr(event, "type", None) == "response.completed" and usage:
                    input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
                yield event
            outcome = "ok"
        except GeneratorExit:  # the consumer stopped early: not the model's failure
            outcome = "ok"
            raise
        finally:
            _model_call(self.name, outcome, input_tokens, output_tokens)

    async def close(self) -> None:
        await self.inner.close()

    def get_retry_advice(self, request: Any) -> Any:
        return self.inner.get_retry_advice(request)


class MeteredModelProvider(ModelProvider):
    """``inner``'s models, metered (the worker's provider: real, scripted or none configured)."""

    def __init__(self, inner: ModelProvider) -> None:
        self.inner = inner

    def get_model(self, model_name: str | None) -> Model:
        return MeteredModel(self.inner.get_model(model_name), model_name or "default")

    async def aclose(self) -> None:
        await self.inner.aclose()

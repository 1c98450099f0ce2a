"""How codexflow's processes reach Temporal: one client factory, one converter.

Workers connect with the OpenAI Agents plugin, which installs its own pydantic payload converter;
every other process (the API, the CLI, tests) uses :func:`client_converter`, which writes the same
JSON (pydantic models, unset fields left out) without importing the agents SDK. Both keep payloads
past ``CODEXFLOW_PAYLOAD_THRESHOLD_BYTES`` in the records database (``store/payloads.py``), so
every process reads what the others stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Plugin
from temporalio.contrib.pydantic import PydanticPayloadConverter, ToJsonOptions
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from config import Settings
from store.payloads import external_storage

__all__ = ["client_converter", "connect"]


class _PayloadConverter(PydanticPayloadConverter):
    def __init__(self) -> None:
        super().__init__(ToJsonOptions(exclude_unset=True))


def client_converter(settings: Settings) -> DataConverter:
    return DataConverter(
        payload_converter_class=_PayloadConverter, external_storage=external_storage(settings)
    )


async def connect(
    settings: Settings, *, plugins: Sequence[Plugin] = (), runtime: Runtime | None = None
) -> Client:
    """A client of the configured Temporal namespace. With ``plugins`` (a worker's agents plugin)
    the plugin's payload converter is used; without, :func:`client_converter`'s. ``runtime``: the
    Temporal runtime (default: the SDK's); a worker on this client reports its metrics through it."""
    converter = client_converter(settings)
    if plugins:  # the plugin puts its own payload converter in, and keeps the storage
        converter = DataConverter(external_storage=converter.external_storage)
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        plugins=list(plugins),
        data_converter=converter,
        runtime=runtime,
    )

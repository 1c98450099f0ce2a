"""How codexflow's processes reach Temporal: one client factory and the converter clients use.

Workers connect with the OpenAI Agents plugin, which installs its own pydantic converter; every
other process (the API, the CLI, tests) uses :func:`client_converter`, which writes the same JSON
(pydantic models, unset fields left out) without importing the agents SDK.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Plugin
from temporalio.contrib.pydantic import PydanticPayloadConverter, ToJsonOptions
from temporalio.converter import DataConverter
from temporalio.runtime import Runtime

from config import Settings

__all__ = ["client_converter", "connect"]


class _PayloadConverter(PydanticPayloadConverter):
    def __init__(self) -> None:
        super().__init__(ToJsonOptions(exclude_unset=True))


def client_converter() -> DataConverter:
    return DataConverter(payload_converter_class=_PayloadConverter)


async def connect(
    settings: Settings, *, plugins: Sequence[Plugin] = (), runtime: Runtime | None = None
) -> Client:
    """A client of the configured Temporal namespace. With ``plugins`` (a worker's agents plugin)
    the plugin's converter is used; without, :func:`client_converter`. ``runtime``: the Temporal
    runtime (default: the SDK's); a worker on this client reports its metrics through it."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        plugins=list(plugins),
        data_converter=DataConverter.default if plugins else client_converter(),
        runtime=runtime,
    )

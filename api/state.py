"""What the API holds while it runs: settings, the records database, Temporal and the event hub."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from temporalio.client import Client

from config import Settings
from core.temporal import connect
from store.events import EventLog
from store.hub import EventHub

__all__ = ["ApiState", "TemporalConnector", "TemporalUnavailable", "api_state"]


class TemporalUnavailable(RuntimeError):
    """Temporal could not be reached; the API answers 503."""


class TemporalConnector:
    """Connects to Temporal on first use (and again after a failure), so the API starts without it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    async with asyncio.timeout(5):
                        self._client = await connect(self.settings)
                except (RuntimeError, TimeoutError) as err:  # "Failed client connect: ..."
                    raise TemporalUnavailable(str(err) or "connection timed out") from None
            return self._client


@dataclass(frozen=True)
class ApiState:
    settings: Settings
    db: async_sessionmaker[AsyncSession]  # database sessions of the records
    temporal: TemporalConnector
    events: EventLog
    hub: EventHub  # one follower per followed session, fanned out to its subscribers


def api_state(connection: HTTPConnection) -> ApiState:
    """The state of the app serving this request or WebSocket."""
    state: ApiState = connection.app.state.api
    return state

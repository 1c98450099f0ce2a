"""What the API holds while it runs: settings, the records database, Temporal and the event hub."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection
from temporalio.client import Client

from api.schemas import CodexCheck
from config import Settings
from store.events import EventLog
from store.hub import EventHub
from store.payloads import DatabasePayloads
from store.temporal import connect

__all__ = [
    "ApiState",
    "Cached",
    "Memo",
    "StreamSlots",
    "TemporalConnector",
    "TemporalUnavailable",
    "api_state",
]

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
A = TypeVar("A")


# How long a session's answer (row and live status) is shared by the clients polling it, and
# how old an answer they may get while the next is being made.
LIVE_FRESH_S = 0.5
LIVE_STALE_S = 1.0


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


class StreamSlots:
    """A cap on concurrent SSE streams and WebSockets (``CODEXFLOW_MAX_STREAMS``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        """Take a slot; False when all are taken (the caller answers 429 or closes)."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        self.open -= 1


class Coalesced(Generic[T]):
    """One call per key in flight, its answer shared by every caller that asks meanwhile and
    for ``fresh_s`` after (a running session's live status: one Temporal query however many
    clients poll it). While the next call runs, callers get the last answer if it is at most
    ``stale_s`` old: a poller waits on Temporal only when nothing recent is known."""

    def __init__(self, fresh_s: float, stale_s: float = 0.0) -> None:
        self.fresh_s = fresh_s
        self.stale_s = max(fresh_s, stale_s)
        self._calls: dict[str, asyncio.Task[T]] = {}  # the latest call of each key
        self._last: dict[str, tuple[float, T]] = {}  # its latest answer, and when it was asked

    async def get(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] <= self.fresh_s:
            return last[1]
        task = self._calls.get(key)
        if task is None or task.done():
            if len(self._calls) > 10_000:  # forget the stale ones now and then
                self._forget(now)
            task = self._calls[key] = asyncio.ensure_future(self._answer(key, now, call))
            # Seen by someone or not, a failure is no stray "exception never retrieved".
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
        if last is not None and now - last[0] <= self.stale_s:
            return last[1]
        return await asyncio.shield(task)

    async def _answer(self, key: str, asked: float, call: Callable[[], Awaitable[T]]) -> T:
        value = await call()
        self._last[key] = (asked, value)
        return value

    def _forget(self, now: float) -> None:
        self._last = {k: v for k, v in self._last.items() if now - v[0] <= self.stale_s}
        self._calls = {k: t for k, t in self._calls.items() if not t.done()}


class Cached(Generic[T]):
    """The last answer of a slow check, kept ``ttl_s`` seconds; one check runs at a time."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._value: T | None = None
        self._at = -math.inf
        self._lock = asyncio.Lock()

    async def get(self, check: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:
            if self._value is None or time.monotonic() - self._at > self.ttl_s:
                self._value, self._at = await check(), time.monotonic()
            return self._value


class Memo(Generic[K, V]):
    """The last ``size`` values made by key, each made once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, make: Callable[[A], V], arg: A) -> V:
        try:
            return self._values[key]
        except KeyError:
            value = self._values[key] = make(arg)
            if len(self._values) > self.size:
                self._values.popitem(last=False)
            return value


@dataclass(frozen=True)
class ApiState:
    settings: Settings
    db: async_sessionmaker[AsyncSession]  # database sessions of the records
    temporal: TemporalConnector
    events: EventLog
    hub: EventHub  # one follower per followed session, fanned out to its subscribers
    streams: StreamSlots
    payloads: DatabasePayloads  # the payloads kept out of history, for the Temporal UI's codec
    codex_check: Cached[CodexCheck] = field(default_factory=lambda: Cached(60.0))
    answers: Coalesced[Any] = field(default_factory=lambda: Coalesced(LIVE_FRESH_S, LIVE_STALE_S))
    frames: Memo[int, str] = field(default_factory=lambda: Memo(4096))  # SSE frames by event id


def api_state(connection: HTTPConnection) -> ApiState:
    """The state of the app serving this request or WebSocket."""
    state: ApiState = connection.app.state.api
    return state

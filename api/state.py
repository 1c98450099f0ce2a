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
from core.vocabulary import EventKind
from store.events import Event, EventLog
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
    ``stale_s`` old: a poller waits on Temporal only when nothing recent is known. ``forget``
    (on an event of the session, a review sent) makes the next caller wait for a new answer."""

    def __init__(self, fresh_s: float, stale_s: float = 0.0) -> None:
        self.fresh_s = fresh_s
        self.stale_s = max(fresh_s, stale_s)
        # The latest call of each key and when it was asked; its latest answer, likewise.
        self._calls: dict[str, tuple[float, asyncio.Task[T]]] = {}
        self._last: dict[str, tuple[float, T]] = {}
        self._forgotten: dict[str, float] = {}  # answers asked before are not given out

    async def get(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] <= self.fresh_s:
            return last[1]
        held = self._calls.get(key)
        if held is None or held[1].done() or held[0] < self._forgotten.get(key, -math.inf):
            if len(self._calls) > 10_000:  # drop the old ones now and then
                self._drop(now)
            task = asyncio.ensure_future(self._answer(key, now, call))
            # Seen by someone or not, a failure is no stray "exception never retrieved".
            task.add_done_callback(lambda done: done.cancelled() or done.exception())
            held = self._calls[key] = (now, task)
        if last is not None and now - last[0] <= self.stale_s:
            return last[1]
        return await asyncio.shield(held[1])

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
        self._forgotten[key] = time.monotonic()

    async def _answer(self, key: str, asked: float, call: Callable[[], Awaitable[T]]) -> T:
        value = await call()
        if asked >= self._forgotten.get(key, -math.inf):
            self._last[key] = (asked, value)
        return value

    def _drop(self, now: float) -> None:
        self._last = {k: v for k, v in self._last.items() if now - v[0] <= self.stale_s}
        self._calls = {k: v for k, v in self._calls.items() if not v[1].done()}
        self._forgotten = {k: at for k, at in self._forgotten.items() if now - at <= self.stale_s}


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
    answers: Coalesced[Any]  # of polled sessions, wired to the hub: see ``session_answers``
    codex_check: Cached[CodexCheck] = field(default_factory=lambda: Cached(60.0))
    frames: Memo[int, str] = field(default_factory=lambda: Memo(4096))  # SSE frames by event id


def session_answers(events: EventLog) -> tuple[Coalesced[Any], EventHub]:
    """The shared answers of polled sessions and the event hub, wired so that an event of a
    session the API follows (not codex's output lines, which come by the hundred) makes its
    next answer a new one: a client that saw a session end never reads it running."""
    answers: Coalesced[Any] = Coalesced(LIVE_FRESH_S, LIVE_STALE_S)

    def changed(event: Event) -> None:
        if event.kind not in (EventKind.CODEX_EVENT, EventKind.CODEX_STDERR):
            answers.forget(event.session_id)

    return answers, EventHub(events, on_event=changed)


def api_state(connection: HTTPConnection) -> ApiState:
    """The state of the app serving this request or WebSocket."""
    state: ApiState = connection.app.state.api
    return state

"""One follower per followed session, fanned out to every subscriber: :class:`EventHub`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from sqlalchemy.exc import TimeoutError as PoolTimeout

from store.events import Event, EventLog

__all__ = ["EventHub", "SubscriberTooSlow"]


class SubscriberTooSlow(RuntimeError):
    """A subscriber fell too far behind its feed; it should reconnect from its last event id."""


class EventHub:
    """One follower per session in this process, fanned out to every subscriber.

    Hundreds of SSE or WebSocket clients of one session then cost one database follower (one
    connection on PostgreSQL, one poller on SQLite) instead of one each. A subscriber first reads
    its backlog from the log itself, then takes the feed's events after the last one it yielded:
    it is registered with the feed before it reads the backlog, and the log hands a session's
    events out in id order, so nothing falls between the two.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        max_lag: int = 10_000,
        poll_interval: float = 0.05,
        on_event: Callable[[Event], object] | None = None,
    ) -> None:
        self.log = log
        self.on_event = on_event  # told of each followed event before its subscribers
        self.max_lag = max_lag
        self.poll_interval = poll_interval  # SQLite only; PostgreSQL followers are notified
        self._feeds: dict[str, _Feed] = {}

    @property
    def feeds(self) -> int:
        """Followers running now (one per followed session)."""
        return len(self._feeds)

    async def subscribe(self, session_id: str, after_id: int = 0) -> AsyncGenerator[Event, None]:
        """Every event of the session with ``id > after_id``, in order, until the caller stops."""
        feed = self._feeds.get(session_id)
        if feed is None:
            feed = self._feeds[session_id] = _Feed(self, session_id)
        queue: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        feed.subscribers.add(queue)
        try:
            await feed.started()
            cursor = after_id
            while page := await self._read(session_id, cursor):
                for event in page:
                    yield event
                cursor = page[-1].id
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item.id > cursor:
                    cursor = item.id
                    yield item
        finally:
            feed.subscribers.discard(queue)
            if not feed.subscribers:
                self._feeds.pop(session_id, None)
                await feed.stop()

    async def _read(self, session_id: str, after_id: int) -> list[Event]:
        """A page of the backlog; when every connection is busy (a thousand subscribers arriving
        at once), wait and read again rather than end the subscriber's stream."""
        for delay in (0.1, 0.2, 0.5, 1, 2, 5):
            try:
                return await self.log.read(session_id, after_id)
            except PoolTimeout:
                await asyncio.sleep(delay)
        return await self.log.read(session_id, after_id)


class _Feed:
    def __init__(self, hub: EventHub, session_id: str) -> None:
        self.hub = hub
        self.session_id = session_id
        self.subscribers: set[asyncio.Queue[Event | BaseException]] = set()
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"event-feed-{session_id}")

    async def started(self) -> None:
        # The feed starts from the log's end; subscribers read anything older themselves.
        await self._ready.wait()

    async def _run(self) -> None:
        try:
            start = await self.hub.log.last_id(self.session_id)
            self._ready.set()
            follow = self.hub.log.follow(
                self.session_id, start, poll_interval=self.hub.poll_interval
            )
            async with contextlib.aclosing(follow) as events:
                async for event in events:
                    if self.hub.on_event is not None:
                        self.hub.on_event(event)
                    for queue in list(self.subscribers):
                        if queue.qsize() >= self.hub.max_lag:
                            self.subscribers.discard(queue)
                            queue.put_nowait(SubscriberTooSlow("reconnect with Last-Event-ID"))
                        else:
                            queue.put_nowait(event)
        except Exception as err:  # the subscribers see the follower's failure
            self._ready.set()
            for queue in list(self.subscribers):
                queue.put_nowait(err)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

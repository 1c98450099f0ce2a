"""A small client of the codexflow HTTP API: what ``codexflow run/review/status/...`` speak.

``ApiClient.follow()`` reads a session's Server-Sent Events and, when the connection drops (an API
restart, a proxy timeout), reconnects with ``Last-Event-ID``, so a follower neither loses nor
repeats an event. ``ApiClient.resolve()`` turns what a user typed for a session or project (its id,
or a unique prefix of it, as git takes commits) into the id.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx

from config import Settings
from core.vocabulary import END_KINDS

if TYPE_CHECKING:  # store.events (SQLAlchemy) only when following: `codexflow api` starts fast
    from store.events import Event

__all__ = ["MIN_PREFIX", "PAGE", "Ambiguous", "ApiClient", "ApiError", "Kind"]

MIN_PREFIX = 4
"""The fewest characters of an id that ``resolve`` takes as a prefix."""
PAGE = 200
"""The most the API lists in one answer (its ``limit``)."""

Kind = Literal["session", "project"]
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ApiError(RuntimeError):
    """The API refused a request or could not be reached; the message says what to do."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Ambiguous(ApiError):
    """What the user typed names more than one session or project: ``candidates`` are they."""

    def __init__(self, message: str, candidates: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.candidates = candidates


class ApiClient:
    def __init__(self, settings: Settings, timeout: float = 30) -> None:
        token = settings.api_token.get_secret_value() if settings.api_token else None
        self.base_url = settings.api_url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    # --- plain requests ---------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self.http.request(method, path, **kwargs)
        except httpx.TransportError as err:
            raise ApiError(
                f"cannot reach the codexflow API at {self.base_url} ({err.__class__.__name__}): "
                "start it with `codexflow up`, or set CODEXFLOW_API_URL"
            ) from None
        if answer.status_code == 401:
            sent = "Authorization" in self.http.headers
            raise ApiError(
                "the API refused the token (CODEXFLOW_API_TOKEN does not match the server's)"
                if sent
                else "the API needs its token: set CODEXFLOW_API_TOKEN",
                401,
            )
        if answer.is_error:
            raise ApiError(_detail(answer), answer.status_code)
        return (
            answer.json()
            if answer.headers.get("content-type", "").startswith("application/json")
            else answer.text
        )

    def listed(self, kind: Kind, **params: Any) -> Iterator[dict[str, Any]]:
        """Every session or project the list endpoint answers for ``params``, page after page."""
        skip = 0
        while True:
            page = self.request(
                "GET", f"/api/{kind}s/", params=params | {"skip": skip, "limit": PAGE}
            )
            items = page[f"{kind}s"]
            yield from items
            skip += len(items)
            if not items or skip >= page["total"]:
                return

    def resolve(self, kind: Kind, ref: str) -> str:
        """The id of the session (or active project) that ``ref`` names: its whole id, or a prefix
        of it of at least ``MIN_PREFIX`` characters that no other id starts with.

        ``Ambiguous`` when the prefix fits several (or is too short to be taken as one), an
        ``ApiError`` (404) when it fits none. A whole id is taken as it is: the request that uses
        it says whether it exists.
        """
        wanted = ref.strip().lower()
        if _UUID.fullmatch(wanted):
            return wanted
        if len(wanted) < MIN_PREFIX:
            raise Ambiguous(
                f"{ref!r} is too short for a {kind} id: give at least {MIN_PREFIX} characters", []
            )
        found = {item["id"]: item for item in self.listed(kind) if item["id"].startswith(wanted)}
        if not found:
            raise ApiError(f"no such {kind}: no {kind} id starts with {ref!r}", 404)
        if len(found) > 1:
            raise Ambiguous(
                f"{kind} id prefix {ref!r} is ambiguous: {len(found)} {kind}s start with it",
                sorted(found.values(), key=lambda item: str(item["id"])),
            )
        return next(iter(found))

    def project_named(
        self, name: str, create: bool = True, repository: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The active project called ``name``; created when there is none and ``create`` is set
        (empty, or importing ``repository``). ``Ambiguous`` when several have that name."""
        named = list(self.listed("project", name=name))
        if len(named) > 1:
            raise Ambiguous(f"{len(named)} projects are named {name!r}", named)
        if named:
            return named[0]
        if not create:
            raise ApiError(f"no project named {name!r}", 404)
        body: dict[str, Any] = {"name": name} | ({"repository": repository} if repository else {})
        return self.request("POST", "/api/projects/", json=body)

    def project(self, project_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/projects/{project_id}")

    def wait_until_imported(
        self,
        project_id: str,
        progress: Callable[[str], None] = lambda _: None,
        timeout: float = 3600,
    ) -> dict[str, Any]:
        """The project once its repository is imported (``progress`` is told git's progress as it
        changes); ApiError if the import failed."""
        deadline, shown = time.monotonic() + timeout, None
        while True:
            project = self.request("GET", f"/api/projects/{project_id}")
            if (now := project.get("import_progress")) and now != shown:
                progress(now)
                shown = now
            if project["status"] == "ready":
                return project
            if project["status"] == "failed":
                raise ApiError(f"the import failed: {project.get('error')}")
            if time.monotonic() > deadline:
                raise ApiError(f"project {project_id} is still importing after {timeout:g}s")
            time.sleep(0.5)

    def start_session(
        self, project_id: str, request: str, options: dict[str, Any]
    ) -> dict[str, Any]:
        body = {
            "project_id": project_id,
            "user_request": request,
            "options": options,
            "start": True,
        }
        return self.request("POST", "/api/sessions/", json=body)

    def session(self, session_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/sessions/{session_id}")

    def sessions(self, status: str | None = None, limit: int = 20) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit} | ({"status": status} if status else {})
        return self.request("GET", "/api/sessions/", params=params)

    def review(self, session_id: str, stage: str, decision: str, feedback: str = "") -> Any:
        body = {"stage": stage, "decision": decision, "feedback": feedback}
        return self.request("POST", f"/api/sessions/{session_id}/review", json=body)

    def cancel(self, session_id: str) -> Any:
        return self.request("POST", f"/api/sessions/{session_id}/cancel")

    # --- the live event stream -------------------------------------------------------------------

    def follow(
        self,
        session_id: str,
        after_id: int = 0,
        *,
        give_up_after: float = 120,
        on_reconnect: Callable[[str], None] | None = None,
    ) -> Iterator[Event]:
        """The session's events after ``after_id``, through its end event, across reconnects.

        A dropped connection is retried with backoff from the last event seen; after
        ``give_up_after`` seconds without getting through, ``ApiError`` says why.
        """
        last_id, delay, failing_since = after_id, 0.2, None
        while True:
            try:
                for event in self._stream(session_id, last_id):
                    failing_since, delay = None, 0.2
                    if event.id <= last_id:
                        continue  # never hand out an event twice
                    last_id = event.id
                    yield event
                    if event.kind in END_KINDS:
                        return
                reason = "the stream ended early"
            except (httpx.TransportError, httpx.HTTPStatusError) as err:
                if isinstance(err, httpx.HTTPStatusError) and err.response.status_code < 500:
                    raise ApiError(_detail(err.response), err.response.status_code) from None
                reason = f"{err.__class__.__name__}"
            now = time.monotonic()
            failing_since = failing_since or now
            if now - failing_since > give_up_after:
                raise ApiError(f"lost the event stream of session {session_id}: {reason}")
            if on_reconnect:
                on_reconnect(reason)
            time.sleep(delay)
            delay = min(delay * 2, 5)

    def _stream(self, session_id: str, after_id: int) -> Iterator[Event]:
        headers = {"Last-Event-ID": str(after_id)} if after_id else {}
        # The server sends a keepalive comment every 15 s of silence: 60 s of nothing is a dead link.
        timeout = httpx.Timeout(10, read=60)
        with self.http.stream(
            "GET", f"/api/sessions/{session_id}/events", headers=headers, timeout=timeout
        ) as answer:
            if answer.is_error:
                answer.read()
                answer.raise_for_status()
            yield from _parse_sse(session_id, answer.iter_lines())


def _parse_sse(session_id: str, lines: Iterator[str]) -> Iterator[Event]:
    """The events of ``event_json`` form in an SSE stream (``data:`` lines, a blank line after)."""
    from store.events import Event

    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            event = json.loads("\n".join(data))
            data = []
            yield Event(
                id=event["id"],
                session_id=session_id,
                kind=event["kind"],
                payload=event.get("payload") or {},
                codex_task_id=event.get("codex_task_id"),
                attempt=event.get("attempt"),
                created_at=datetime.fromisoformat(event["created_at"]),
            )


def _detail(answer: httpx.Response) -> str:
    try:
        detail = answer.json().get("detail", answer.text)
    except ValueError:
        detail = answer.text
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
        )
    return f"{answer.status_code}: {detail}"

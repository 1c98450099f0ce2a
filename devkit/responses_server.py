"""A scripted, OpenAI-compatible Responses API server that plays the LLM in tests.

It answers ``POST /v1/responses`` both as a Server-Sent-Events stream (what the codex binary
asks for) and as a plain JSON ``Response`` object (what the ``openai`` client and openai-agents
ask for by default). What the "model" says is decided by a :class:`Script`, one turn per request.

Run standalone with ``python -m devkit.responses_server --port P --script turns.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeAlias

from config import Settings

__all__ = [
    "HttpError",
    "Message",
    "Patch",
    "ScriptedResponsesServer",
    "Script",
    "SequenceScript",
    "Stall",
    "ToolCall",
    "Truncated",
    "Turn",
    "turn_from_json",
]

MODELS = ("gpt-5.5", "gpt-5.4", "gpt-5.4-mini")


# --- the script ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A final assistant message."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """A ``function_call`` item, e.g. codex's ``exec_command {"cmd": ...}`` or an agent's tool."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Patch:
    """A ``custom_tool_call`` to codex's freeform ``apply_patch`` tool."""

    patch: str


@dataclass(frozen=True)
class Stall:
    """Wait ``seconds`` before serving ``then`` (to exercise timeouts and heartbeats)."""

    seconds: float
    then: Turn


@dataclass(frozen=True)
class HttpError:
    """Answer with an HTTP error status and an OpenAI-style error body."""

    status: int = 500
    message: str = "scripted error"


@dataclass(frozen=True)
class Truncated:
    """Start the reply, then drop the connection before ``response.completed``."""


Turn: TypeAlias = Message | ToolCall | Patch | Stall | HttpError | Truncated


class Script(Protocol):
    """Decides the next turn from the request body."""

    def reply(self, request: dict[str, Any]) -> Turn: ...


class SequenceScript:
    """Hands out turns in order, then ``default`` forever. Safe to share between threads."""

    def __init__(self, turns: Sequence[Turn], default: Turn = Message("Done.")) -> None:
        self._turns = list(turns)
        self._default = default
        self._lock = threading.Lock()

    def reply(self, request: dict[str, Any]) -> Turn:
        with self._lock:
            return self._turns.pop(0) if self._turns else self._default

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._turns)


def turn_from_json(data: dict[str, Any]) -> Turn:
    """Build a turn from its JSON form, as used by ``--script`` files.

    ``{"message": "Done."}``, ``{"tool": "exec_command", "cmd": "ls"}`` (or
    ``{"tool": NAME, "arguments": {...}}``), ``{"patch": "*** Begin Patch..."}``,
    ``{"stall": 2, "then": {...}}``, ``{"http_error": 500, "message": "..."}``, ``{"truncated": true}``.
    """
    if "tool" in data:
        args = data.get("arguments", {k: v for k, v in data.items() if k != "tool"})
        return ToolCall(str(data["tool"]), dict(args))
    if "patch" in data:
        return Patch(str(data["patch"]))
    if "stall" in data:
        return Stall(float(data["stall"]), turn_from_json(data.get("then", {"message": "Done."})))
    if "http_error" in data:
        return HttpError(int(data["http_error"]), str(data.get("message", "scripted error")))
    if data.get("truncated"):
        return Truncated()
    if "message" in data:
        return Message(str(data["message"]))
    raise ValueError(f"not a scripted turn: {data!r}")


# --- building Responses API payloads ------------------------------------------------------------


class _Ids:
    """Per-server id counters, so every item in a run gets a unique, readable id."""

    def __init__(self) -> None:
        self._counters: dict[str, Iterator[int]] = {}
        self._lock = threading.Lock()

    def next(self, prefix: str) -> str:
        with self._lock:
            counter = self._counters.setdefault(prefix, itertools.count(1))
            return f"{prefix}_{next(counter)}"


def _output_item(turn: Message | ToolCall | Patch, ids: _Ids) -> dict[str, Any]:
    if isinstance(turn, Message):
        text = {"type": "output_text", "text": turn.text, "annotations": [], "logprobs": []}
        return {
            "id": ids.next("msg"),
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [text],
        }
    if isinstance(turn, ToolCall):
        return {
            "id": ids.next("fc"),
            "type": "function_call",
            "call_id": ids.next("call"),
            "name": turn.name,
            "arguments": json.dumps(turn.arguments),
            "status": "completed",
        }
    return {
        "id": ids.next("ctc"),
        "type": "custom_tool_call",
        "call_id": ids.next("call"),
        "name": "apply_patch",
        "input": turn.patch,
    }


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _response(
    response_id: str,
    request: dict[str, Any],
    output: list[dict[str, Any]],
    usage: dict[str, Any],
) -> dict[str, Any]:
    """A complete, finished Response object."""
    now = int(time.time())
    tool_choice = request.get("tool_choice")
    return {
        "id": response_id,
        "object": "response",
        "created_at": now,
        "completed_at": now,
        "status": "completed",
        "model": request.get("model", MODELS[0]),
        "output": output,
        "usage": usage,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "parallel_tool_calls": bool(request.get("parallel_tool_calls", True)),
        "tool_choice": tool_choice if isinstance(tool_choice, str) else "auto",
        "tools": [],
        "temperature": None,
        "top_p": None,
        "previous_response_id": None,
        "reasoning": None,
        "store": False,
        "background": False,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
    }


# How a response looks while it is still being generated.
_IN_PROGRESS = {"status": "in_progress", "usage": None, "completed_at": None}


def _stream_events(response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The SSE events of one reply, in the order and shape the real API streams them."""
    yield {"type": "response.created", "response": {**response, **_IN_PROGRESS, "output": []}}
    yield {"type": "response.in_progress", "response": {**response, **_IN_PROGRESS, "output": []}}
    for index, item in enumerate(response["output"]):
        yield {"type": "response.output_item.added", "output_index": index, "item": _opened(item)}
        yield from _item_deltas(item, {"item_id": item["id"], "output_index": index})
        yield {"type": "response.output_item.done", "output_index": index, "item": item}
    yield {"type": "response.completed", "response": response}


def _opened(item: dict[str, Any]) -> dict[str, Any]:
    """An item as first announced: in progress, with its content still empty."""
    empty: dict[str, dict[str, Any]] = {
        "message": {"content": []},
        "function_call": {"arguments": ""},
    }
    opened = {**item, **empty.get(item["type"], {"input": ""})}
    if "status" in item:
        opened["status"] = "in_progress"
    return opened


def _item_deltas(item: dict[str, Any], where: dict[str, Any]) -> Iterator[dict[str, Any]]:
    # The whole text arrives as a single delta: enough for clients that accumulate deltas.
    if item["type"] == "message":
        part = item["content"][0]
        at = {**where, "content_index": 0}
        yield {"type": "response.content_part.added", **at, "part": {**part, "text": ""}}
        yield {"type": "response.output_text.delta", **at, "delta": part["text"], "logprobs": []}
        yield {"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []}
        yield {"type": "response.content_part.done", **at, "part": part}
    elif item["type"] == "function_call":
        arguments = item["arguments"]
        yield {"type": "response.function_call_arguments.delta", **where, "delta": arguments}
        yield {"type": "response.function_call_arguments.done", **where, "arguments": arguments}
    else:
        yield {"type": "response.custom_tool_call_input.delta", **where, "delta": item["input"]}
        yield {"type": "response.custom_tool_call_input.done", **where, "input": item["input"]}


def _sse(event: dict[str, Any], sequence_number: int) -> bytes:
    data = json.dumps({**event, "sequence_number": sequence_number})
    return f"event: {event['type']}\ndata: {data}\n\n".encode()


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


# --- the HTTP server ----------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: ScriptedResponsesServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-reply (e.g. a cancelled codex run) is routine, not an error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "devkit"} for m in MODELS
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, _error_body(404, f"no route for GET {self.path}"))

    def do_POST(self) -> None:
        body = self._read_body()
        if self.path.rstrip("/") != "/v1/responses":
            self._send_json(404, _error_body(404, f"no route for POST {self.path}"))
            return
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, _error_body(400, "request body is not JSON"))
            return
        self.server.app._record(request)
        try:
            turn = self.server.app.script.reply(request)
        except Exception as error:  # a broken script should fail the request, visibly
            turn = HttpError(500, f"script failed: {error!r}")
        self._serve_turn(request, turn)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._read_chunks())
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunks(self) -> Iterator[bytes]:
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            yield self.rfile.read(size)
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers, up to the blank line
            pass

    def _serve_turn(self, request: dict[str, Any], turn: Turn) -> None:
        app = self.server.app
        while isinstance(turn, Stall):
            if app._stopping.wait(turn.seconds):
                self.close_connection = True  # shutting down: hang up without a reply
                return
            turn = turn.then
        if isinstance(turn, HttpError):
            self._send_json(turn.status, _error_body(turn.status, turn.message))
            return
        stream = bool(request.get("stream"))
        if isinstance(turn, Truncated):
            self._send_truncated(request, stream)
            return
        output = [_output_item(turn, app._ids)]
        response = _response(app._ids.next("resp"), request, output, app._usage())
        if stream:
            self._send_stream(_stream_events(response))
        else:
            self._send_json(200, response)

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_stream(self) -> None:
        # No Content-Length: the stream ends when the connection closes.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def _send_stream(self, events: Iterator[dict[str, Any]]) -> None:
        self._start_stream()
        for number, event in enumerate(events):
            self.wfile.write(_sse(event, number))
            self.wfile.flush()

    def _send_truncated(self, request: dict[str, Any], stream: bool) -> None:
        app = self.server.app
        response = {**_response(app._ids.next("resp"), request, [], app._usage()), **_IN_PROGRESS}
        if stream:
            self._start_stream()
            self.wfile.write(_sse({"type": "response.created", "response": response}, 0))
        else:
            # Promise the whole body, deliver half of it.
            body = json.dumps(response).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True


class ScriptedResponsesServer:
    """A local Responses API endpoint driven by a script; runs in a daemon thread::

    with ScriptedResponsesServer([ToolCall("exec_command", {"cmd": "ls"})]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="x")
    """

    def __init__(
        self,
        script: Script | Sequence[Turn],
        host: str = "127.0.0.1",
        port: int = 0,
        usage: tuple[int, int] = (100, 20),
    ) -> None:
        self.script: Script = SequenceScript(script) if isinstance(script, Sequence) else script
        self.requests: list[dict[str, Any]] = []
        self._address = (host, port)
        self._usage_tokens = usage
        self._ids = _Ids()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._address[0]}:{self.port}/v1"

    def serving(self, settings: Settings, **overrides: Any) -> Settings:
        """``settings`` with both the agents and codex talking to this server."""
        return settings.model_copy(
            update={
                "openai_base_url": self.base_url,
                "codex_base_url": self.base_url,
                "codex_model": "gpt-5.5",  # codex needs a model name; the script ignores it
                **overrides,
            }
        )

    def start(self) -> ScriptedResponsesServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, _Handler)
        self._httpd.app = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="responses-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes stalled handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> ScriptedResponsesServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _record(self, request: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(request)

    def _usage(self) -> dict[str, Any]:
        return _usage(*self._usage_tokens)


# --- command line -------------------------------------------------------------------------------


def _load_script(path: str | None) -> list[Turn]:
    if path is None:
        return []
    return [turn_from_json(item) for item in json.loads(Path(path).read_text())]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.responses_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", help="JSON file with a list of turns")
    parser.add_argument("--usage", type=int, nargs=2, default=(100, 20), metavar=("IN", "OUT"))
    args = parser.parse_args(argv)

    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    server = ScriptedResponsesServer(
        _load_script(args.script), args.host, args.port, (args.usage[0], args.usage[1])
    )
    with server:
        print(server.base_url, flush=True)
        while not done.wait(0.5):  # a timed wait keeps signal handlers responsive
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

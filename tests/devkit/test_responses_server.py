"""The scripted Responses API server, seen by the openai client and by the real codex binary."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool
from openai.types.responses import ResponseCompletedEvent

from devkit.responses_server import (
    HttpError,
    Message,
    Patch,
    ScriptedResponsesServer,
    SequenceScript,
    Stall,
    ToolCall,
    Truncated,
    Turn,
    turn_from_json,
)
from tests.helpers.codex import run_real_codex

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start servers for a test and always stop them afterwards."""
    servers: list[ScriptedResponsesServer] = []

    def start(turns: list[Turn], **kwargs: Any) -> ScriptedResponsesServer:
        servers.append(ScriptedResponsesServer(turns, **kwargs).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def client_for(server: ScriptedResponsesServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)


# --- the openai client --------------------------------------------------------------------------


def test_message_and_function_call(serve: Any) -> None:
    server = serve([Message("Hello there."), ToolCall("get_weather", {"city": "Paris"})])
    client = client_for(server)

    first = client.responses.create(model="gpt-5.5", input="hi")
    assert first.output_text == "Hello there."
    assert first.model == "gpt-5.5"
    assert first.usage is not None and first.usage.total_tokens == 120

    second = client.responses.create(model="gpt-5.5", input="weather?")
    call = second.output[0]
    assert call.type == "function_call"
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert first.id != second.id

    third = client.responses.create(model="gpt-5.5", input="and now?")
    assert third.output_text == "Done."  # the script ran out

    assert [r["input"] for r in server.requests] == ["hi", "weather?", "and now?"]


def test_streaming(serve: Any) -> None:
    server = serve([Message("Streamed."), ToolCall("lookup", {"q": 1})], usage=(7, 3))
    client = client_for(server)

    events = list(client.responses.create(model="gpt-5.5", input="hi", stream=True))
    types = [event.type for event in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert "response.output_item.added" in types and "response.output_item.done" in types
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == "Streamed."
    completed = events[-1]
    assert isinstance(completed, ResponseCompletedEvent)
    assert completed.response.output_text == "Streamed."
    usage = completed.response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens) == (7, 3)

    with client.responses.stream(model="gpt-5.5", input="again") as stream:
        response = stream.get_final_response()
    assert response.output[0].type == "function_call"
    assert server.requests[0]["stream"] is True


def test_http_error_surfaces_as_status_error(serve: Any) -> None:
    server = serve([HttpError(503, "overloaded")])
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(server).responses.create(model="gpt-5.5", input="hi")
    assert caught.value.status_code == 503
    assert "overloaded" in str(caught.value)


def test_truncated_reply_breaks_the_connection(serve: Any) -> None:
    server = serve([Truncated()])
    with pytest.raises(openai.APIConnectionError):
        client_for(server).responses.create(model="gpt-5.5", input="hi")


def test_stall_delays_the_reply(serve: Any) -> None:
    server = serve([Stall(0.4, Message("Late."))])
    started = time.monotonic()
    response = client_for(server).responses.create(model="gpt-5.5", input="hi")
    assert response.output_text == "Late."
    assert time.monotonic() - started >= 0.4


def test_stop_releases_a_stalled_request(serve: Any) -> None:
    server = serve([Stall(30, Message("never"))])
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)
    stopper = threading.Timer(0.2, server.stop)
    stopper.start()
    started = time.monotonic()
    with pytest.raises(openai.APIConnectionError):
        client.responses.create(model="gpt-5.5", input="hi")
    assert time.monotonic() - started < 5
    stopper.join()


async def test_openai_agents_model(serve: Any) -> None:
    """openai-agents' OpenAIResponsesModel runs a tool loop against the server."""
    server = serve([ToolCall("get_weather", {"city": "Paris"}), Message("Sunny in Paris.")])

    @function_tool
    def get_weather(city: str) -> str:
        return f"sunny in {city}"

    model = OpenAIResponsesModel(
        "gpt-5.5", openai.AsyncOpenAI(base_url=server.base_url, api_key="x")
    )
    agent = Agent(name="forecaster", instructions="Be brief.", tools=[get_weather], model=model)
    result = await Runner.run(
        agent, "Weather in Paris?", run_config=RunConfig(tracing_disabled=True)
    )

    assert result.final_output == "Sunny in Paris."
    tool_output = server.requests[1]["input"][-1]
    assert tool_output["type"] == "function_call_output"
    assert tool_output["output"] == "sunny in Paris"


def test_models_and_unknown_paths(serve: Any) -> None:
    server = serve([])
    assert "gpt-5.5" in [model.id for model in client_for(server).models.list()]
    with pytest.raises(openai.NotFoundError):
        client_for(server).chat.completions.create(model="gpt-5.5", messages=[])


def test_sequence_script_default() -> None:
    script = SequenceScript([Message("one")], default=Message("again"))
    replies = [script.reply({}) for _ in range(3)]
    assert replies == [Message("one"), Message("again"), Message("again")]
    assert script.remaining == 0


def test_turn_from_json() -> None:
    assert turn_from_json({"message": "Done."}) == Message("Done.")
    assert turn_from_json({"tool": "exec_command", "cmd": "ls"}) == ToolCall(
        "exec_command", {"cmd": "ls"}
    )
    assert turn_from_json({"tool": "f", "arguments": {"a": 1}}) == ToolCall("f", {"a": 1})
    assert turn_from_json({"patch": "P"}) == Patch("P")
    assert turn_from_json({"stall": 2, "then": {"message": "x"}}) == Stall(2.0, Message("x"))
    assert turn_from_json({"http_error": 429}) == HttpError(429)
    assert turn_from_json({"truncated": True}) == Truncated()
    with pytest.raises(ValueError):
        turn_from_json({"nonsense": 1})


def test_command_line_server(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text(json.dumps([{"message": "From a file."}]))
    process = subprocess.Popen(
        [sys.executable, "-m", "devkit.responses_server", "--script", str(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)
        assert client.responses.create(model="gpt-5.5", input="hi").output_text == "From a file."
    finally:
        process.terminate()
        assert process.wait(timeout=5) == 0


# --- the real codex binary ----------------------------------------------------------------------


def run_codex(server: ScriptedResponsesServer, tmp_path: Path) -> tuple[Path, int, list[dict]]:
    """One real `codex exec` against the server, as the project drives it; returns its events."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    code, events = run_real_codex(
        server.base_url, workspace, tmp_path / "codex-home", "Do the task."
    )
    return workspace, code, events


def test_real_codex_runs_a_command(serve: Any, tmp_path: Path) -> None:
    server = serve(
        [ToolCall("exec_command", {"cmd": "printf 'hello\\n' > hello.txt"}), Message("Done.")]
    )
    workspace, code, events = run_codex(server, tmp_path)

    assert code == 0, events
    assert (workspace / "hello.txt").read_text() == "hello\n"
    types = [event["type"] for event in events]
    assert types[0] == "thread.started" and types[-1] == "turn.completed"
    assert events[-1]["usage"]["input_tokens"] == 200  # two requests of 100 tokens each
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    commands = [item for item in items if item["type"] == "command_execution"]
    assert commands[-1]["exit_code"] == 0

    assert len(server.requests) == 2
    first, second = server.requests
    assert first["stream"] is True and first["model"] == "gpt-5.5"
    assert {"exec_command", "apply_patch"} <= {tool.get("name") for tool in first["tools"]}
    assert second["input"][-1]["type"] == "function_call_output"


def test_real_codex_applies_a_patch(serve: Any, tmp_path: Path) -> None:
    patch = "*** Begin Patch\n*** Add File: notes/plan.md\n+# Plan\n*** End Patch\n"
    server = serve([Patch(patch), Message("Patched.")])
    workspace, code, events = run_codex(server, tmp_path)

    assert code == 0, events
    assert (workspace / "notes/plan.md").read_text() == "# Plan\n"
    changes = [e["item"] for e in events if e.get("item", {}).get("type") == "file_change"]
    assert changes[-1]["changes"][0]["kind"] == "add"
    assert events[-2]["item"]["type"] == "agent_message"
    assert events[-2]["item"]["text"] == "Patched."
    assert server.requests[1]["input"][-1]["type"] == "custom_tool_call_output"


@pytest.mark.parametrize("failure", [HttpError(500), Truncated()], ids=["http-500", "truncated"])
def test_real_codex_fails_without_retrying(serve: Any, tmp_path: Path, failure: Turn) -> None:
    server = serve([failure])
    _, code, events = run_codex(server, tmp_path)

    assert code == 1
    assert [e["type"] for e in events][-2:] == ["error", "turn.failed"]
    assert len(server.requests) == 1  # request_max_retries=0, stream_max_retries=0

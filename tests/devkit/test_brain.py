"""PipelineBrain plays the LLM for the four role agents and for codex, deterministically."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool
from pydantic import BaseModel

from core.vocabulary import Role
from crew.reports import BuildReport, PlanReport, QAReport, ReadinessReport
from crew.roles import ROLES
from devkit.brain import (
    AGENTS_MD,
    CALC_PY,
    CODEX,
    TEST_CALC_PY,
    UNKNOWN,
    PipelineBrain,
    count_by_role,
    speaker_of,
)
from devkit.responses_server import HttpError, Message, Patch, ScriptedResponsesServer, ToolCall
from tests.helpers.codex import run_real_codex

ROOT = Path(__file__).resolve().parents[2]
FAKE_CODEX = ROOT / "devkit" / "fake_codex.py"
TEST_COMMAND = ["python3", "-m", "unittest", "-v"]
REPORTS: dict[Role, type[BaseModel]] = {
    Role.PLANNER: PlanReport,
    Role.BUILDER: BuildReport,
    Role.QA_QC: QAReport,
    Role.PROD_READY: ReadinessReport,
}


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[ScriptedResponsesServer] = []

    def start(brain: PipelineBrain) -> ScriptedResponsesServer:
        servers.append(ScriptedResponsesServer(brain).start())
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def stage_input(role: Role, iteration: int = 1, extra: str = "") -> str:
    return f"STAGE: {role.value} #{iteration}\nUSER REQUEST: build a calculator\n{extra}"


def agent_request(role: Role, user: str, outputs: Sequence[str] = ()) -> dict[str, Any]:
    """A request shaped like openai-agents' after ``len(outputs)`` tool calls."""
    items: list[dict[str, Any]] = [{"role": "user", "content": user}]
    for n, output in enumerate(outputs):
        call = {"type": "function_call", "call_id": f"c{n}", "name": "t", "arguments": "{}"}
        items += [call, {"type": "function_call_output", "call_id": f"c{n}", "output": output}]
    return {"model": "gpt-5.5", "instructions": ROLES[role].instructions, "input": items}


def agent_codex_prompts(brain: PipelineBrain, role: Role, user: str) -> list[str]:
    """The run_codex prompts an agent's conversation makes, in order, until its report."""
    prompts: list[str] = []
    while True:
        turn = brain.reply(agent_request(role, user, ["codex exit 0"] * len(prompts)))
        if isinstance(turn, Message):
            return prompts
        assert isinstance(turn, ToolCall) and turn.name == "run_codex", turn
        prompts.append(turn.arguments["prompt"])


def pipeline_prompts(brain: PipelineBrain) -> list[str]:
    """Builder's, QA's and ProdReady's codex prompts: the whole build of a first pass."""
    return [
        prompt
        for role in (Role.BUILDER, Role.QA_QC, Role.PROD_READY)
        for prompt in agent_codex_prompts(brain, role, stage_input(role))
    ]


def unittest_in(workspace: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        TEST_COMMAND, cwd=workspace, capture_output=True, text=True, timeout=30, check=False
    )


def git_workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    subprocess.run(["git", "init", "-q", str(workspace)], check=True)
    return workspace


# --- the agents, through the openai client -------------------------------------------------------


def test_planner_saves_agents_md_then_reports(serve: Any) -> None:
    server = serve(PipelineBrain())
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    tools: list[Any] = [
        {
            "type": "function",
            "name": "save_agents_md",
            "parameters": {"type": "object", "properties": {"content": {"type": "string"}}},
            "strict": False,
        }
    ]
    instructions = ROLES[Role.PLANNER].instructions
    user = {"role": "user", "content": stage_input(Role.PLANNER)}

    def create(items: list[Any]) -> Any:
        return client.responses.create(
            model="gpt-5.5", instructions=instructions, input=items, tools=tools
        )

    first = create([user])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "save_agents_md"
    assert json.loads(call.arguments) == {"content": AGENTS_MD}

    history = [
        user,
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "AGENTS.md saved."},
    ]  # fmt: skip
    report = PlanReport.model_validate_json(create(history).output_text)
    assert report.agents_md_saved is True
    assert report.requirements and report.steps

    # The same request, the same reply (only ids differ).
    again = create([user]).output[0]
    assert again.type == "function_call" and again.arguments == call.arguments
    assert count_by_role(server.requests) == {"planner": 3}


def test_agents_md_has_every_section() -> None:
    sections = [
        "# Overview",
        "## Functional requirements",
        "## Technical requirements",
        "## File structure",
        "## Acceptance criteria",
        "## Implementation steps",
    ]
    positions = [AGENTS_MD.index(section) for section in sections]
    assert positions == sorted(positions)
    assert "1. add(a, b)" in AGENTS_MD and "`python3 -m unittest -v`" in AGENTS_MD
    assert "calc.py" in AGENTS_MD and "test_calc.py" in AGENTS_MD


@pytest.mark.parametrize(("iteration", "verdict"), [(1, "FAIL"), (2, "PASS")])
def test_qa_verdict_follows_the_stage_iteration(serve: Any, iteration: int, verdict: str) -> None:
    server = serve(PipelineBrain(qa_failures=1))
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    user: Any = {"role": "user", "content": stage_input(Role.QA_QC, iteration)}
    kwargs: dict[str, Any] = {"model": "gpt-5.5", "instructions": ROLES[Role.QA_QC].instructions}

    call = client.responses.create(input=[user], **kwargs).output[0]
    assert call.type == "function_call" and call.name == "run_codex"
    prompt = json.loads(call.arguments)["prompt"]
    assert prompt == "Run the test suite with `python3 -m unittest -v` and report the result."

    history: list[Any] = [
        user,
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "exit 0"},
    ]  # fmt: skip
    texts = [client.responses.create(input=history, **kwargs).output_text for _ in range(2)]
    assert texts[0] == texts[1]
    report = QAReport.model_validate_json(texts[0])
    assert report.verdict == verdict
    assert bool(report.issues) == (verdict == "FAIL")


def test_prod_ready_needs_work_then_approves() -> None:
    brain = PipelineBrain(needs_work=1)
    verdicts = []
    for iteration in (1, 2):
        turn = brain.reply(agent_request(Role.PROD_READY, stage_input(Role.PROD_READY, iteration)))
        assert isinstance(turn, ToolCall) and turn.name == "run_codex"
        assert "hardcoded secrets" in turn.arguments["prompt"]
        user = stage_input(Role.PROD_READY, iteration)
        final = brain.reply(agent_request(Role.PROD_READY, user, ["exit 0"]))
        assert isinstance(final, Message)
        report = ReadinessReport.model_validate_json(final.text)
        verdicts.append((report.verdict, bool(report.blocking)))
    assert verdicts == [("NEEDS_WORK", True), ("APPROVED", False)]


@pytest.mark.parametrize(
    "listed",
    [
        # As crew.prompts lays it out: numbered items, then the next section.
        "1. divide() lacks a float test\n2. README.md is missing\n\nYOUR TASK: fix them",
        "- divide() lacks a float test\n- README.md is missing\n\nHISTORY:\n- x",
    ],
    ids=["numbered", "dashed"],
)
def test_builder_fixes_the_listed_issues(listed: str) -> None:
    user = stage_input(Role.BUILDER, 2, f"ISSUES TO FIX:\n{listed}")
    prompts = agent_codex_prompts(PipelineBrain(), Role.BUILDER, user)
    assert len(prompts) == 1
    assert "- divide() lacks a float test\n- README.md is missing\n\n" in prompts[0]
    final = PipelineBrain().reply(agent_request(Role.BUILDER, user, ["exit 0"]))
    assert isinstance(final, Message)
    report = BuildReport.model_validate_json(final.text)
    assert report.steps_completed == [
        "Fix: divide() lacks a float test",
        "Fix: README.md is missing",
    ]


def test_speaker_and_unknown_requests() -> None:
    brain = PipelineBrain()
    codex = {"input": [{"role": "user", "content": "hi"}], "tools": [{"name": "exec_command"}]}
    stranger = {"input": "hi"}
    odd_role = {"instructions": "ROLE: astronaut\nFly.", "input": "hi"}
    assert [speaker_of(r) for r in (codex, stranger, odd_role)] == [CODEX, UNKNOWN, UNKNOWN]
    assert isinstance(brain.reply(stranger), HttpError)
    assert isinstance(brain.reply(odd_role), HttpError)
    requests = [agent_request(role, "x") for role in Role] + [codex, codex, stranger]
    assert count_by_role(requests) == {
        "planner": 1,
        "builder": 1,
        "qa_qc": 1,
        "prod_ready": 1,
        "codex": 2,
        "unknown": 1,
    }


# --- the agents, through the Agents SDK ----------------------------------------------------------


EXPECTED_TOOLS = {
    Role.PLANNER: ["save_agents_md"],
    Role.BUILDER: ["run_codex", "run_codex"],
    Role.QA_QC: ["run_codex"],
    Role.PROD_READY: ["run_codex"],
}


def recording_tools(calls: list[tuple[str, dict[str, Any]]], role: Role) -> list[Any]:
    """Stub tools with the agents' names and parameters that only record their calls."""

    @function_tool
    def run_codex(prompt: str) -> str:
        """Run codex."""
        calls.append(("run_codex", {"prompt": prompt}))
        return "codex exit 0; files changed: calc.py"

    @function_tool
    def read_file(path: str) -> str:
        """Read a file."""
        calls.append(("read_file", {"path": path}))
        return ""

    @function_tool
    def list_files(path: str) -> str:
        """List files."""
        calls.append(("list_files", {"path": path}))
        return "No files yet."

    @function_tool
    def read_agents_md() -> str:
        """Read AGENTS.md."""
        calls.append(("read_agents_md", {}))
        return AGENTS_MD

    @function_tool
    def save_agents_md(content: str) -> str:
        """Save AGENTS.md."""
        calls.append(("save_agents_md", {"content": content}))
        return f"AGENTS.md saved ({len(content)} characters)."

    tools = [run_codex, read_file, list_files, read_agents_md]
    return tools + [save_agents_md] if role is Role.PLANNER else tools


@pytest.mark.parametrize("role", list(Role), ids=[role.value for role in Role])
async def test_agents_sdk_runs_every_role(serve: Any, role: Role) -> None:
    server = serve(PipelineBrain())
    calls: list[tuple[str, dict[str, Any]]] = []
    model = OpenAIResponsesModel(
        model="gpt-5.5",
        openai_client=openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0),
    )
    agent = Agent(
        name=ROLES[role].name,
        instructions=ROLES[role].instructions,
        model=model,
        output_type=REPORTS[role],
        tools=recording_tools(calls, role),
    )
    user = f"STAGE: {role.value} #1\nUSER REQUEST: build a calculator"
    result = await Runner.run(agent, user, run_config=RunConfig(tracing_disabled=True))

    report = result.final_output
    assert isinstance(report, REPORTS[role])
    assert [name for name, _ in calls] == EXPECTED_TOOLS[role]
    assert count_by_role(server.requests) == {role.value: len(EXPECTED_TOOLS[role]) + 1}
    assert all(r["text"]["format"]["type"] == "json_schema" for r in server.requests)
    if role is Role.PLANNER:
        assert calls[0][1] == {"content": AGENTS_MD}
        assert isinstance(report, PlanReport) and report.agents_md_saved is True
    if role is Role.QA_QC:
        assert isinstance(report, QAReport) and report.verdict == "PASS"
    if role is Role.PROD_READY:
        assert isinstance(report, ReadinessReport) and report.verdict == "APPROVED"


# --- codex: the real binary, and the fake one ----------------------------------------------------


def real_codex(server: ScriptedResponsesServer, workspace: Path, home: Path, prompt: str) -> Any:
    """One real `codex exec` against the server; returns (exit code, JSONL events)."""
    return run_real_codex(server.base_url, workspace, home, prompt)


def last_message(events: list[dict[str, Any]]) -> str:
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    return [item["text"] for item in items if item["type"] == "agent_message"][-1]


def test_real_codex_builds_and_checks_the_project(serve: Any, tmp_path: Path) -> None:
    server = serve(PipelineBrain())
    workspace, home = git_workspace(tmp_path), tmp_path / "codex-home"
    home.mkdir()
    (workspace / "AGENTS.md").write_text(AGENTS_MD)  # codex hands it to the model, as in a run

    messages = []
    for prompt in pipeline_prompts(PipelineBrain()):
        code, events = real_codex(server, workspace, home, prompt)
        assert code == 0, events
        messages.append(last_message(events))

    assert (workspace / "calc.py").read_text() == CALC_PY
    assert (workspace / "test_calc.py").read_text() == TEST_CALC_PY
    assert messages[0].startswith("Implemented calc.py")
    assert messages[1] == "Wrote test_calc.py. All tests pass: `python3 -m unittest -v` exited 0."
    assert messages[2] == "All tests pass: `python3 -m unittest -v` exited 0."
    assert messages[3].endswith("No hardcoded secrets found.")
    # calc: patch + message; tests: patch, run + message; QA: run + message; ProdReady: 2 + 1.
    assert count_by_role(server.requests) == {"codex": 2 + 3 + 2 + 3}
    assert all("instructions" not in request for request in server.requests)

    tests = unittest_in(workspace)
    assert tests.returncode == 0, tests.stderr
    assert "Ran 5 tests" in tests.stderr and "OK" in tests.stderr


def codex_request(prompt: str, outputs: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A request shaped like the real codex's (context parts, then the prompt, then tools)."""
    context = [
        {"type": "input_text", "text": "# AGENTS.md instructions for /ws\n\n<INSTRUCTIONS>..."},
        {"type": "input_text", "text": "<environment_context>\n  <cwd>/ws</cwd>\n"},
    ]
    items = [
        {
            "type": "message",
            "role": "developer",
            "content": [{"type": "input_text", "text": "sys"}],
        },
        {"type": "message", "role": "user", "content": context},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]},
        *outputs,
    ]
    tools = [
        {"type": "function", "name": "exec_command"},
        {"type": "custom", "name": "apply_patch"},
    ]
    return {"model": "gpt-5.5", "input": items, "tools": tools, "stream": True}


def test_codex_side_is_decided_by_prompt_and_progress() -> None:
    brain = PipelineBrain()
    ran = {
        "type": "function_call_output",
        "call_id": "c",
        "output": "Process exited with code 1\nF",
    }
    fix = brain.reply(codex_request("ISSUES TO FIX:\n- calc.py is wrong"))
    assert fix == ToolCall("exec_command", {"cmd": "python3 -m unittest -v", "login": False})
    failed = brain.reply(codex_request("ISSUES TO FIX:\n- calc.py is wrong", [ran]))
    assert isinstance(failed, Message) and "exited 1" in failed.text

    assert brain.reply(codex_request("What is here?")) == ToolCall(
        "exec_command", {"cmd": "ls", "login": False}
    )
    assert brain.reply(codex_request("What is here?", [ran])) == Message("Checked.")

    patch = brain.reply(codex_request("Please implement calc.py now."))
    assert isinstance(patch, Patch) and patch.patch.startswith(
        "*** Begin Patch\n*** Add File: calc.py\n"
    )
    assert patch.patch.endswith("*** End Patch\n")
    assert brain.reply(codex_request("Please implement calc.py now.")) == patch  # deterministic


def test_fake_codex_directives_build_the_same_program(tmp_path: Path) -> None:
    workspace = git_workspace(tmp_path)
    prompts = pipeline_prompts(PipelineBrain(fake_codex=True))
    assert "\n@fake write=calc.py:" in prompts[0]
    assert "\n@fake write=test_calc.py:" in prompts[1]
    # The real-codex prompts are the same text without the directive lines.
    plain = pipeline_prompts(PipelineBrain())
    assert [p.split("\n\n@fake ")[0] for p in prompts] == plain

    for prompt in prompts:
        command = [sys.executable, str(FAKE_CODEX), "exec", "--json", "--skip-git-repo-check"]
        result = subprocess.run(
            [*command, "-C", str(workspace), prompt],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        commands = [
            json.loads(line)["item"]
            for line in result.stdout.splitlines()
            if '"command_execution"' in line and '"item.completed"' in line
        ]
        assert all(item["exit_code"] == 0 for item in commands), commands

    assert (workspace / "calc.py").read_text() == CALC_PY
    assert (workspace / "test_calc.py").read_text() == TEST_CALC_PY
    tests = unittest_in(workspace)
    assert tests.returncode == 0, tests.stderr
    assert "Ran 5 tests" in tests.stderr

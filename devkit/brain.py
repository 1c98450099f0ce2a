"""One deterministic script that plays the LLM for a whole offline pipeline run.

A single ``ScriptedResponsesServer(PipelineBrain())`` answers the four role agents (planner,
builder, qa_qc, prod_ready; OpenAI Agents SDK through ``OpenAIResponsesModel``) *and* the codex
binary they drive. The project they build is tiny: ``calc.py`` (add, subtract, multiply, divide)
and ``test_calc.py`` (unittest), verified with ``python3 -m unittest -v``.

Every reply is decided from the request body alone, never from what the brain saw before:

* who is asking — an agent request has ``instructions`` whose first line is ``ROLE: <role>``;
  a codex request has no ``instructions`` and offers the ``exec_command`` / ``apply_patch`` tools;
* how far it got — an agent's step is the number of ``function_call_output`` items in ``input``;
  codex's step is the number of tool outputs after its latest user prompt;
* which iteration — the agent's user input carries ``STAGE: <role> #<n>``; with ``qa_failures=N``
  QA iterations 1..N report FAIL, with ``needs_work=N`` ProdReady iterations 1..N say NEEDS_WORK.

So the same request always gets the same reply: a crashed-and-resumed run that repeats a model
call gets the same answer, and one that does not can be told apart by its request bodies.

With ``fake_codex=True`` the agents' ``run_codex`` prompts also carry ``@fake`` directive lines
(see ``devkit/fake_codex.py``) so the fake codex makes the same edits the real one would.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from crew.markers import CURRENT_STEP, ISSUES_TO_FIX, current_step_in, issues_in, role_in, stage_in
from devkit.responses_server import HttpError, Message, Patch, ToolCall, Turn

__all__ = [
    "AGENTS_MD",
    "CALC_PY",
    "CODEX",
    "PROMPT_CALC",
    "PROMPT_QA",
    "PROMPT_READINESS",
    "PROMPT_TESTS",
    "REQUIREMENTS",
    "STEPS",
    "PipelineBrain",
    "TEST_CALC_PY",
    "TEST_COMMAND",
    "UNKNOWN",
    "codex_prompt",
    "count_by_role",
    "speaker_of",
]

CODEX = "codex"
UNKNOWN = "unknown"
_ROLES = ("planner", "builder", "qa_qc", "prod_ready")
TEST_COMMAND = "python3 -m unittest -v"

_EXIT_CODE = re.compile(r"(?:exited with code|Exit code:)\s*(-?\d+)")
_SECRETS_CLEAN = "no hardcoded secrets found"

# --- the project ---------------------------------------------------------------------------------

REQUIREMENTS = [
    "add(a, b) returns a + b.",
    "subtract(a, b) returns a - b.",
    "multiply(a, b) returns a * b.",
    'divide(a, b) returns a / b and raises ValueError("division by zero") when b == 0.',
    "Every function accepts ints and floats and has type hints and a docstring.",
    "test_calc.py covers every function, including division by zero, with unittest.",
]

STEPS = [
    "Implement calc.py with add, subtract, multiply and divide (ValueError on division by zero).",
    "Write test_calc.py: unittest tests for every function and the division-by-zero error.",
]

AGENTS_MD = f"""# Overview

A tiny calculator library: the Python module `calc.py` offers the four arithmetic operations, and
`test_calc.py` proves they work. It exists to exercise the delivery pipeline end to end, so it
stays small, dependency-free and fully tested.

## Functional requirements

{chr(10).join(f"{n}. {text}" for n, text in enumerate(REQUIREMENTS, 1))}

## Technical requirements

- Python 3.10 or newer, standard library only (no third-party packages).
- Tests use `unittest`; no test runner needs installing.
- PEP 8 style, type hints on every public function, a docstring on every public function.
- No I/O, no global state, no hardcoded secrets.

## File structure

- `calc.py` — the four functions `add`, `subtract`, `multiply`, `divide`.
- `test_calc.py` — `unittest` test case covering every function and the error path.
- `AGENTS.md` — this document.

## Acceptance criteria

- `{TEST_COMMAND}` run at the workspace root exits 0 and runs at least 4 tests.
- `divide(1, 0)` raises `ValueError` with the message `division by zero`.
- No file contains credentials, tokens or passwords.

## Implementation steps

{chr(10).join(f"{n}. {text}" for n, text in enumerate(STEPS, 1))}
"""

CALC_PY = '''"""A tiny calculator: the four arithmetic operations."""

from __future__ import annotations

Number = int | float


def add(a: Number, b: Number) -> Number:
    """Return a + b."""
    return a + b


def subtract(a: Number, b: Number) -> Number:
    """Return a - b."""
    return a - b


def multiply(a: Number, b: Number) -> Number:
    """Return a * b."""
    return a * b


def divide(a: Number, b: Number) -> float:
    """Return a / b; raise ValueError when b is zero."""
    if b == 0:
        raise ValueError("division by zero")
    return a / b
'''

TEST_CALC_PY = '''"""Tests for calc.py; run with `python3 -m unittest -v`."""

import unittest

from calc import add, divide, multiply, subtract


class CalcTest(unittest.TestCase):
    def test_add(self) -> None:
        self.assertEqual(add(2, 3), 5)
        self.assertAlmostEqual(add(0.1, 0.2), 0.3)

    def test_subtract(self) -> None:
        self.assertEqual(subtract(5, 3), 2)
        self.assertEqual(subtract(3, 5), -2)

    def test_multiply(self) -> None:
        self.assertEqual(multiply(4, 3), 12)
        self.assertEqual(multiply(-2, 0.5), -1)

    def test_divide(self) -> None:
        self.assertEqual(divide(10, 4), 2.5)
        self.assertEqual(divide(-9, 3), -3)

    def test_divide_by_zero(self) -> None:
        with self.assertRaises(ValueError) as caught:
            divide(1, 0)
        self.assertEqual(str(caught.exception), "division by zero")


if __name__ == "__main__":
    unittest.main()
'''

_SECRETS_COMMAND = (
    "grep -rnEi '(api[_-]?key|secret|password|token)[[:space:]]*=' --include='*.py' . "
    f"|| echo '{_SECRETS_CLEAN}'"
)

# --- the prompts the agents give codex -----------------------------------------------------------

_REQUIREMENT_LINES = "\n".join(f"{n}. {text}" for n, text in enumerate(REQUIREMENTS, 1))

PROMPT_CALC = f"""{CURRENT_STEP} 1. {STEPS[0]}

REQUIREMENTS FROM AGENTS.md:
{_REQUIREMENT_LINES}

EXISTING CODE CONTEXT: the workspace holds AGENTS.md only.

Create calc.py at the workspace root with the functions add, subtract, multiply and divide, each
with type hints and a docstring. divide(a, b) must raise ValueError("division by zero") when b is 0.
Standard library only. Implement only this step; the tests come in the next step."""

PROMPT_TESTS = f"""{CURRENT_STEP} 2. {STEPS[1]}

REQUIREMENTS FROM AGENTS.md:
{_REQUIREMENT_LINES}

EXISTING CODE CONTEXT: calc.py defines add, subtract, multiply and divide.

Create test_calc.py at the workspace root: one unittest.TestCase with a test for each function and
one asserting that divide(1, 0) raises ValueError("division by zero"). Then run `{TEST_COMMAND}`
and report the result."""

PROMPT_QA = f"Run the test suite with `{TEST_COMMAND}` and report the result."

PROMPT_READINESS = f"""Production readiness check. Do not modify any file.
1. Run the test suite with `{TEST_COMMAND}` and report the result.
2. Search the Python files for hardcoded secrets (API keys, passwords, tokens) and report any hit."""


def _prompt_fix(issues: list[str]) -> str:
    listed = "\n".join(f"- {issue}" for issue in issues)
    return f"""{ISSUES_TO_FIX}
{listed}

Fix exactly these issues with minimal changes, keep every AGENTS.md requirement intact, then run
`{TEST_COMMAND}` and report the result."""


def _escape(text: str) -> str:
    """The one-line form fake codex's ``unescape`` turns back into ``text``."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def _directives(*pairs: tuple[str, str]) -> str:
    return "\n".join(f"@fake {key}={value}" for key, value in pairs)


_FAKE_DIRECTIVES = {
    PROMPT_CALC: _directives(
        ("write", f"calc.py:{_escape(CALC_PY)}"), ("message", "Implemented calc.py.")
    ),
    PROMPT_TESTS: _directives(
        ("write", f"test_calc.py:{_escape(TEST_CALC_PY)}"),
        ("cmd", TEST_COMMAND),
        ("message", f"Wrote test_calc.py and ran {TEST_COMMAND}."),
    ),
    PROMPT_QA: _directives(("cmd", TEST_COMMAND), ("message", f"Ran {TEST_COMMAND}.")),
    PROMPT_READINESS: _directives(
        ("cmd", TEST_COMMAND),
        ("cmd", _SECRETS_COMMAND),
        ("message", "Ran the test suite and the secrets check."),
    ),
}
_FIX_DIRECTIVES = _directives(
    ("cmd", TEST_COMMAND), ("message", f"Addressed the issues and ran {TEST_COMMAND}.")
)

# --- reading a request ---------------------------------------------------------------------------


def _text(content: Any) -> str:
    """The text of a message's content: a string, or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return "\n".join(part for part in parts if isinstance(part, str))
    return ""


def _items(request: dict[str, Any]) -> list[dict[str, Any]]:
    raw = request.get("input")
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if isinstance(raw, list):
        return [item for item in raw if isinstance(item, dict)]
    return []


def _is_user_message(item: dict[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def _tool_names(request: dict[str, Any]) -> set[str]:
    tools = request.get("tools") or []
    return {str(tool.get("name")) for tool in tools if isinstance(tool, dict)}


def speaker_of(request: dict[str, Any]) -> str:
    """Who sent a Responses request: a role (``planner``...), ``codex`` or ``unknown``."""
    instructions = request.get("instructions")
    if isinstance(instructions, str) and instructions:
        role = role_in(instructions)
        return role if role in _ROLES else UNKNOWN
    if _tool_names(request) & {"exec_command", "apply_patch"}:
        return CODEX
    return UNKNOWN


def count_by_role(requests: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many requests each role (and ``codex``, ``unknown``) made."""
    return dict(Counter(speaker_of(request) for request in requests))


def _exit_code(output: str) -> int | None:
    match = _EXIT_CODE.search(output)
    return int(match[1]) if match else None


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# Codex's own context arrives as user-message parts too; they are not the user's prompt.
_CONTEXT_PREFIXES = ("<environment_context>", "# AGENTS.md instructions", "<user_instructions>")


def codex_prompt(request: dict[str, Any]) -> tuple[str, list[str]]:
    """Codex's latest user prompt in a request, and the outputs of the tool calls made since."""
    return _codex_prompt(_items(request))


def _codex_prompt(items: list[dict[str, Any]]) -> tuple[str, list[str]]:
    prompt, start = "", 0
    for index, item in enumerate(items):
        if not _is_user_message(item):
            continue
        content = item.get("content")
        parts = content if isinstance(content, list) else [{"text": _text(content)}]
        texts = [_text([part]) for part in parts]
        texts = [t for t in texts if t.strip() and not t.lstrip().startswith(_CONTEXT_PREFIXES)]
        if texts:
            prompt, start = "\n".join(texts), index + 1
    outputs = [
        _output_text(item)
        for item in items[start:]
        if item.get("type") in ("function_call_output", "custom_tool_call_output")
    ]
    return prompt, outputs


def _started_task(output: str) -> str:
    """The task id in run_codex's answer when it did not wait."""
    found = re.search(r"codex task (\S+) started", output)
    return found.group(1) if found else UNKNOWN


def _output_text(item: dict[str, Any]) -> str:
    output = item.get("output")
    return output if isinstance(output, str) else _text(output)


# --- the brain -----------------------------------------------------------------------------------


class PipelineBrain:
    """Plays the LLM for the four role agents and for codex; see the module docstring.

    ``fake_codex``: the agents' codex prompts carry ``@fake`` directives for devkit/fake_codex.py.
    ``qa_failures``: QA iterations 1..N report FAIL. ``needs_work``: ProdReady iterations 1..N
    report NEEDS_WORK. ``background_codex``: the Builder starts its codex tasks without waiting
    (``wait_for_completion=false``), checks the first and waits for the last (the seed's tools).
    """

    def __init__(
        self,
        fake_codex: bool = False,
        qa_failures: int = 0,
        needs_work: int = 0,
        background_codex: bool = False,
    ) -> None:
        self.fake_codex = fake_codex
        self.qa_failures = qa_failures
        self.needs_work = needs_work
        self.background_codex = background_codex

    def reply(self, request: dict[str, Any]) -> Turn:
        speaker = speaker_of(request)
        if speaker == CODEX:
            return self._codex(_items(request))
        if speaker in _ROLES:
            items = _items(request)
            user = "\n".join(_text(item.get("content")) for item in items if _is_user_message(item))
            outputs = [_output_text(i) for i in items if i.get("type") == "function_call_output"]
            handler = getattr(self, f"_{speaker}")
            turn: Turn = handler(user, outputs, _iteration(user, speaker))
            return turn
        return HttpError(400, "PipelineBrain cannot tell which agent (or codex) sent this request")

    # -- the agents --

    def _run_codex(self, prompt: str, directives: str | None = None, wait: bool = True) -> ToolCall:
        if self.fake_codex:
            prompt = f"{prompt}\n\n{directives or _FAKE_DIRECTIVES[prompt]}"
        return ToolCall(
            "run_codex", {"prompt": prompt, **({} if wait else {"wait_for_completion": False})}
        )

    def _planner(self, user: str, outputs: list[str], iteration: int) -> Turn:
        if not outputs:
            return ToolCall("save_agents_md", {"content": AGENTS_MD})
        saved = not re.search(r"refused|error|fail", outputs[0], re.IGNORECASE)
        return _report(
            summary=(
                "A dependency-free Python calculator module (calc.py) with add, subtract, "
                "multiply and divide, fully covered by a unittest suite (test_calc.py)."
            ),
            requirements=REQUIREMENTS,
            steps=STEPS,
            agents_md_saved=saved,
        )

    def _builder(self, user: str, outputs: list[str], iteration: int) -> Turn:
        if ISSUES_TO_FIX in user:
            if not outputs:
                return self._run_codex(_prompt_fix(_issues(user)), _FIX_DIRECTIVES)
            return _report(
                summary=f"Had codex address the reported issues (builder iteration {iteration}).",
                steps_completed=[f"Fix: {issue}" for issue in _issues(user)],
                files_changed=[],
                deviations=[],
            )
        prompts = [PROMPT_CALC, PROMPT_TESTS]
        if len(outputs) < len(prompts):
            return self._run_codex(prompts[len(outputs)], wait=not self.background_codex)
        if self.background_codex and len(outputs) < len(prompts) + 2:
            first, last = (_started_task(output) for output in outputs[:2])
            if len(outputs) == len(prompts):
                return ToolCall("check_codex_status", {"task_id": first})
            return ToolCall("wait_for_codex", {"task_id": last})
        return _report(
            summary="Implemented calc.py and its unittest suite test_calc.py through codex.",
            steps_completed=STEPS,
            files_changed=["calc.py", "test_calc.py"],
            deviations=[],
        )

    def _qa_qc(self, user: str, outputs: list[str], iteration: int) -> Turn:
        if not outputs:
            return self._run_codex(PROMPT_QA)
        if iteration <= self.qa_failures:
            return _report(
                verdict="FAIL",
                summary=f"QA iteration {iteration}: the suite runs, but a criterion is not met.",
                issues=[
                    "test_calc.py never checks divide() with float operands; add "
                    "assertAlmostEqual(divide(7.5, 2.5), 3.0) to test_divide."
                ],
                tests=f"{TEST_COMMAND}: ran, coverage incomplete",
            )
        return _report(
            verdict="PASS",
            summary="Every acceptance criterion holds and the test suite passes.",
            issues=[],
            tests=f"{TEST_COMMAND}: OK",
        )

    def _prod_ready(self, user: str, outputs: list[str], iteration: int) -> Turn:
        if not outputs:
            return self._run_codex(PROMPT_READINESS)
        if iteration <= self.needs_work:
            return _report(
                verdict="NEEDS_WORK",
                summary=f"Readiness review {iteration}: one item blocks the release.",
                blocking=["README.md is missing: add one with usage and the test command."],
                recommendations=["Pin the supported Python versions in AGENTS.md."],
            )
        return _report(
            verdict="APPROVED",
            summary="Tests pass, no hardcoded secrets, and every AGENTS.md requirement is met.",
            blocking=[],
            recommendations=["Add a README.md with usage and the test command."],
        )

    # -- codex --

    def _codex(self, items: list[dict[str, Any]]) -> Turn:
        prompt, outputs = _codex_prompt(items)
        # Directive lines are for the fake codex; the real one reads the prompt around them.
        task = "\n".join(line for line in prompt.splitlines() if not line.startswith("@fake "))
        # A builder prompt names its step first; the requirements below it mention every file.
        focus = current_step_in(task) or task
        actions: list[Turn]
        if ISSUES_TO_FIX in task:
            actions, kind = [_exec(TEST_COMMAND)], "fix"
        elif "test_calc.py" in focus:
            actions, kind = [_add_file("test_calc.py", TEST_CALC_PY), _exec(TEST_COMMAND)], "tests"
        elif "calc.py" in focus:
            actions, kind = [_add_file("calc.py", CALC_PY)], "calc"
        elif re.search(r"secret", task, re.IGNORECASE):
            actions, kind = [_exec(TEST_COMMAND), _exec(_SECRETS_COMMAND)], "readiness"
        elif re.search(r"\btests?\b|unittest", task, re.IGNORECASE):
            actions, kind = [_exec(TEST_COMMAND)], "run_tests"
        else:
            actions, kind = [_exec("ls")], "other"
        if len(outputs) < len(actions):
            return actions[len(outputs)]
        return Message(_codex_summary(kind, outputs))


def _codex_summary(kind: str, outputs: list[str]) -> str:
    if kind == "calc":
        return "Implemented calc.py: add, subtract, multiply and divide (ValueError on zero)."
    if kind == "other":
        return "Checked."
    tests = outputs[-1] if kind != "readiness" else outputs[0]
    code = _exit_code(tests)
    verdict = (
        f"All tests pass: `{TEST_COMMAND}` exited 0."
        if code == 0
        else f"Tests failed: `{TEST_COMMAND}` exited {code}.\n{_tail(tests)}"
    )
    if kind == "tests":
        return f"Wrote test_calc.py. {verdict}"
    if kind == "fix":
        return f"Reviewed the reported issues against the code. {verdict}"
    if kind == "readiness":
        clean = _SECRETS_CLEAN in outputs[1]
        secrets = "No hardcoded secrets found." if clean else f"Possible secrets:\n{outputs[1]}"
        return f"{verdict} {secrets}"
    return verdict


def _exec(cmd: str) -> ToolCall:
    return ToolCall("exec_command", {"cmd": cmd, "login": False})


def _add_file(path: str, text: str) -> Patch:
    body = "".join(f"+{line}\n" for line in text.splitlines())
    return Patch(f"*** Begin Patch\n*** Add File: {path}\n{body}*** End Patch\n")


def _report(**fields: Any) -> Message:
    return Message(json.dumps(fields, indent=2))


def _iteration(user: str, role: str) -> int:
    """The iteration in ``STAGE: <role> #<n>`` (the first STAGE line if none names the role)."""
    stage = stage_in(user, role)
    return stage[1] if stage else 1


def _issues(user: str) -> list[str]:
    """The items listed under ``ISSUES TO FIX`` in an agent's input."""
    return issues_in(user) or ["the issues listed in the input"]

"""A scripted stand-in for the agents' model (the plugin's ``TestModel``), deciding by input.

Each call is answered from the request alone: the role and the stage iteration (read with
``crew.markers``) and how many tool results the agent has seen so far.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents import ModelResponse, Usage
from openai.types.responses import ResponseFunctionToolCall
from temporalio.openai_agents.testing import ResponseBuilders, TestModel

from crew.markers import role_in, stage_in

__all__ = ["Turn", "ScriptedAgentModel", "tool", "report", "pipeline_script"]


@dataclass(frozen=True)
class Turn:
    """Where an agent is: its role, stage iteration, the stage input, and tool results seen."""

    role: str
    iteration: int
    text: str
    step: int
    outputs: tuple[str, ...] = ()  # the tool results seen, in order


Script = Callable[[Turn], ModelResponse]


def tool(name: str, **arguments: Any) -> ModelResponse:
    body = json.dumps(arguments)
    # Ids unique per call: one agent may call a tool many times in a stage.
    digest = hashlib.sha256(f"{name}{body}".encode()).hexdigest()[:12]
    return ResponseBuilders.model_response(
        ResponseFunctionToolCall(
            arguments=body,
            call_id=f"call_{name}_{digest}",
            name=name,
            type="function_call",
            id=f"fc_{name}_{digest}",
            status="completed",
        )  # fmt: skip
    )


def report(**fields: Any) -> ModelResponse:
    return ResponseBuilders.output_message(json.dumps(fields))


@dataclass
class ScriptedAgentModel(TestModel):
    script: Script
    tokens: tuple[int, int] = (0, 0)  # (input, output) reported per call
    calls: list[Turn] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(lambda: ResponseBuilders.output_message(""))

    async def get_response(
        self, system_instructions, input, *args: Any, **kwargs: Any
    ) -> ModelResponse:
        turn = _turn(system_instructions or "", input)
        self.calls.append(turn)
        response = self.script(turn)
        inp, out = self.tokens
        response.usage = Usage(
            requests=1, input_tokens=inp, output_tokens=out, total_tokens=inp + out
        )
        return response


def _turn(instructions: str, input: str | list) -> Turn:
    role = role_in(instructions) or "chat"
    items = [input] if isinstance(input, str) else input
    text = "\n".join(_text(item) for item in items if _is_user(item))
    stage = stage_in(text)
    iteration = stage[1] if stage else 1
    outputs = tuple(
        str(item.get("output"))
        for item in items
        if isinstance(item, dict) and item.get("type") == "function_call_output"
    )
    return Turn(role=role, iteration=iteration, text=text, step=len(outputs), outputs=outputs)


def _is_user(item: Any) -> bool:
    return isinstance(item, str) or (isinstance(item, dict) and item.get("role") == "user")


def _text(item: Any) -> str:
    if isinstance(item, str):
        return item
    content = item.get("content")
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


AGENTS_MD = (
    "# Overview\nA tiny calculator.\n\n## Acceptance criteria\n- `python3 -m unittest` passes\n"
)


def pipeline_script(
    codex_prompt: str = "@fake write=calc.py:def add(a, b):\\n    return a + b\\n",
    qa_failures: int = 0,
    needs_work: int = 0,
) -> Script:
    """A whole happy pipeline; QA fails its first ``qa_failures`` iterations, ProdReady likewise."""

    def play(turn: Turn) -> ModelResponse:
        match turn.role, turn.step:
            case "planner", 0:
                return tool("save_agents_md", content=AGENTS_MD)
            case "planner", _:
                return report(summary="A calculator.", requirements=["add"], steps=["calc.py"],
                              agents_md_saved=True)  # fmt: skip
            case (("builder" | "qa_qc" | "prod_ready"), 0):
                return tool("run_codex", prompt=f"{turn.role} #{turn.iteration}\n{codex_prompt}")
            case "builder", _:
                return report(summary=f"Built (iteration {turn.iteration}).", steps_completed=["calc.py"],
                              files_changed=["calc.py"], deviations=[])  # fmt: skip
            case "qa_qc", _:
                failing = turn.iteration <= qa_failures
                return report(verdict="FAIL" if failing else "PASS", summary=f"QA #{turn.iteration}",
                              issues=[f"issue from QA #{turn.iteration}"] if failing else [],
                              tests="1 passed")  # fmt: skip
            case "prod_ready", _:
                failing = turn.iteration <= needs_work
                return report(verdict="NEEDS_WORK" if failing else "APPROVED",
                              summary=f"ProdReady #{turn.iteration}",
                              blocking=[f"blocker from ProdReady #{turn.iteration}"] if failing else [],
                              recommendations=["add logging"])  # fmt: skip
        return ResponseBuilders.output_message("I can help with that.")

    return play

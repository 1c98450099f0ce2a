"""The agents' workspace tools, as activities bound to the session through the run context.

Each takes the run context first (``activity_as_tool`` leaves it out of the tool schema), so the model
chooses only a relative path or the AGENTS.md text; the workspace comes from the session. Problems a
model can fix (a bad path, a missing file) come back as text for it to read, not as failures.
"""

# No `from __future__ import annotations`: activity_as_tool reads these signatures at run time.
from pathlib import Path
from typing import Any

from agents import RunContextWrapper
from temporalio import activity

from activities.workspace import resolve_workspace
from config import Settings
from core.paths import PathNotAllowed, confine
from workflows.types.workspace import AgentContext, ReadTextInput

__all__ = ["AGENTS_MD", "AgentTools", "read_text"]

AGENTS_MD = "AGENTS.md"
_MAX_AGENTS_MD = 200_000
_MAX_LISTED = 300
_SKIP_DIRS = {
    ".git",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
}


def read_text(workspace: Path, relative: str, max_chars: int) -> str | None:
    """A workspace file's text (``None`` if missing), truncated to ``max_chars`` with a marker."""
    path = confine(workspace, relative)
    if not path.is_file():
        return None
    text = path.read_bytes()[: max_chars * 4].decode("utf-8", errors="replace")
    if len(text) > max_chars:
        return text[:max_chars] + f"\n… [truncated at {max_chars} characters]"
    return text


class AgentTools:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _workspace(self, ctx: Any) -> Path:
        session = ctx.context if isinstance(ctx, RunContextWrapper) else ctx["context"]
        session = AgentContext.model_validate(session)
        return resolve_workspace(self.settings, session.workspace)

    @activity.defn(name="tool_read_file")
    async def read_file(self, ctx: RunContextWrapper[AgentContext], path: str) -> str:
        """Read a text file of the project workspace. `path` is relative to the workspace root."""
        try:
            text = read_text(self._workspace(ctx), path, self.settings.tool_output_max_chars)
        except PathNotAllowed as err:
            return f"Refused: {err}. Use a path relative to the workspace root."
        return text if text is not None else f"File not found: {path}"

    @activity.defn(name="tool_list_files")
    async def list_files(self, ctx: RunContextWrapper[AgentContext], path: str) -> str:
        """List files under a directory of the workspace ('.' for the root), with sizes."""
        root = self._workspace(ctx)
        try:
            base = confine(root, path or ".")
        except PathNotAllowed as err:
            return f"Refused: {err}. Use a path relative to the workspace root."
        if not base.is_dir():
            return f"Not a directory: {path}"
        lines: list[str] = []
        for entry in sorted(base.rglob("*")):
            rel = entry.relative_to(root)
            if _SKIP_DIRS & set(rel.parts) or not entry.is_file():
                continue
            if len(lines) == _MAX_LISTED:
                lines.append(f"… more files not shown (limit {_MAX_LISTED})")
                break
            lines.append(f"{rel} ({entry.stat().st_size} bytes)")
        text = "\n".join(lines) or "No files yet."
        return text[: self.settings.tool_output_max_chars]

    @activity.defn(name="tool_read_agents_md")
    async def read_agents_md(self, ctx: RunContextWrapper[AgentContext]) -> str:
        """Read AGENTS.md, the requirements document all roles work from."""
        text = read_text(self._workspace(ctx), AGENTS_MD, _MAX_AGENTS_MD)
        return text if text is not None else "AGENTS.md does not exist yet; the Planner creates it."

    @activity.defn(name="tool_save_agents_md")
    async def save_agents_md(self, ctx: RunContextWrapper[AgentContext], content: str) -> str:
        """Save AGENTS.md (the whole document, markdown) at the workspace root."""
        if not content.strip():
            return "Refused: AGENTS.md content is empty."
        if len(content) > _MAX_AGENTS_MD:
            return f"Refused: AGENTS.md is longer than {_MAX_AGENTS_MD} characters."
        (self._workspace(ctx) / AGENTS_MD).write_text(content, encoding="utf-8")
        return f"AGENTS.md saved ({len(content)} characters)."

    @activity.defn(name="read_workspace_text")
    async def read_workspace_text(self, input: ReadTextInput) -> str | None:
        workspace = resolve_workspace(self.settings, input.workspace)
        return read_text(workspace, input.path, input.max_chars)

"""The agents' workspace tools, as activities bound to the session through the run context.

Each takes the run context first (``activity_as_tool`` leaves it out of the tool schema), so the model
chooses only a relative path or the AGENTS.md text; the workspace comes from the session. Problems a
model can fix (a bad path, a missing file) come back as text for it to read, not as failures.

The workspace is written by codex, so every file is touched through ``core.confined``: no link is
followed, only regular files are read, reads are bounded, and the work runs off the event loop.
"""

# No `from __future__ import annotations`: activity_as_tool reads these signatures at run time.
import asyncio
from typing import Any

from agents import RunContextWrapper
from temporalio import activity

from activities.workspace import resolve_workspace
from config import Settings
from core.confined import ConfinedDir, PathNotAllowed
from workflows.types.workspace import AgentContext, ReadTextInput

__all__ = ["AGENTS_MD", "AgentTools"]

AGENTS_MD = "AGENTS.md"
_MAX_AGENTS_MD = 200_000
_MAX_LISTED = 300
_SKIP_DIRS = frozenset(
    {".git", "node_modules", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache"}
)


def _refused(err: Exception) -> str:
    return f"Refused: {err}. Use a path relative to the workspace root, to a regular file."


class AgentTools:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _files(self, ctx: Any) -> ConfinedDir:
        session = ctx.context if isinstance(ctx, RunContextWrapper) else ctx["context"]
        session = AgentContext.model_validate(session)
        repo = resolve_workspace(self.settings, session.workspace)
        assert repo.work_tree is not None
        return ConfinedDir(repo.work_tree)

    @activity.defn(name="tool_read_file")
    async def read_file(self, ctx: RunContextWrapper[AgentContext], path: str) -> str:
        """Read a text file of the project workspace. `path` is relative to the workspace root."""
        files = self._files(ctx)
        try:
            text = await asyncio.to_thread(
                files.read_text, path, self.settings.tool_output_max_chars
            )
        except (PathNotAllowed, IsADirectoryError) as err:
            return _refused(err)
        return text if text is not None else f"File not found: {path}"

    @activity.defn(name="tool_list_files")
    async def list_files(self, ctx: RunContextWrapper[AgentContext], path: str) -> str:
        """List files under a directory of the workspace ('.' for the root), with sizes."""
        files = self._files(ctx)
        try:
            lines = await asyncio.to_thread(_list, files, path or ".")
        except FileNotFoundError:
            return f"Not a directory: {path}"
        except (PathNotAllowed, NotADirectoryError) as err:
            return _refused(err)
        text = "\n".join(lines) or "No files yet."
        return text[: self.settings.tool_output_max_chars]

    @activity.defn(name="tool_read_agents_md")
    async def read_agents_md(self, ctx: RunContextWrapper[AgentContext]) -> str:
        """Read AGENTS.md, the requirements document all roles work from."""
        files = self._files(ctx)
        try:
            text = await asyncio.to_thread(files.read_text, AGENTS_MD, _MAX_AGENTS_MD)
        except PathNotAllowed as err:
            return _refused(err)
        return text if text is not None else "AGENTS.md does not exist yet; the Planner creates it."

    @activity.defn(name="tool_save_agents_md")
    async def save_agents_md(self, ctx: RunContextWrapper[AgentContext], content: str) -> str:
        """Save AGENTS.md (the whole document, markdown) at the workspace root."""
        if not content.strip():
            return "Refused: AGENTS.md content is empty."
        if len(content) > _MAX_AGENTS_MD:
            return f"Refused: AGENTS.md is longer than {_MAX_AGENTS_MD} characters."
        files = self._files(ctx)
        try:
            # A new file replaces whatever is there, a link included: never written through.
            await asyncio.to_thread(files.write_text, AGENTS_MD, content)
        except PathNotAllowed as err:
            return _refused(err)
        return f"AGENTS.md saved ({len(content)} characters)."

    @activity.defn(name="read_workspace_text")
    async def read_workspace_text(self, input: ReadTextInput) -> str | None:
        """A workspace file's text for a workflow (None when missing or not a regular file)."""
        repo = resolve_workspace(self.settings, input.workspace)
        assert repo.work_tree is not None
        try:
            return await asyncio.to_thread(
                ConfinedDir(repo.work_tree).read_text, input.path, input.max_chars
            )
        except (PathNotAllowed, IsADirectoryError):
            return None


def _list(files: ConfinedDir, path: str) -> list[str]:
    lines: list[str] = []
    prefix = "" if path in (".", "") else path.rstrip("/") + "/"
    for entry in files.walk(path, skip=_SKIP_DIRS):
        if entry.is_dir or entry.is_link or set(entry.path.split("/")) & _SKIP_DIRS:
            continue
        if len(lines) == _MAX_LISTED:
            lines.append(f"… more files not shown (limit {_MAX_LISTED})")
            break
        lines.append(f"{prefix}{entry.path} ({entry.size} bytes)")
    return lines

"""The agents' workspace tools, as activities bound to the session through the run context.

Each takes the run context first (``activity_as_tool`` leaves it out of the tool schema), so the model
chooses only a path, a line range or a pattern; the workspace comes from the session. Problems a
model can fix (a bad path, a missing file) come back as text for it to read, not as failures, and
every bounded answer says how to get the rest.

The workspace is written by codex, so every file is touched through ``core.confined`` (no link
followed, regular files only, bounded reads, off the event loop) and git through ``core.git``.
"""

# No `from __future__ import annotations`: activity_as_tool reads these signatures at run time.
import asyncio
from typing import Any

from agents import RunContextWrapper
from temporalio import activity

from activities.records import Recorder
from activities.workspace import Workspace, commit_all, resolve_workspace
from config import Settings
from core.confined import ConfinedDir, PathNotAllowed, split_path
from core.git import GitError
from core.repos import ProjectRepos
from workflows.types.workspace import AgentContext, ReadTextInput

__all__ = ["AGENTS_MD", "AgentTools"]

AGENTS_MD = "AGENTS.md"
_MAX_AGENTS_MD = 200_000
_MAX_LINE = 500  # characters of one line shown
_MAX_SCAN_BYTES = 64 * 2**20  # a read_file looks at most this far into a file
_CHUNK = 2**20
_MAX_LISTED = 300
_MAX_MATCHES = 100
_SEARCH_TIMEOUT_S = 30


def _read_lines(
    files: ConfinedDir, path: str, start: int, count: int
) -> tuple[list[str], int, bool] | None:
    """Lines ``start``… (at most ``count``, each cut at a few KB) of a text file, how many lines
    it has, and whether the count stopped at _MAX_SCAN_BYTES; None for a binary file. Read in
    chunks: memory stays small whatever the file's size or its lines' length."""
    wanted: list[bytes] = []
    cap = _MAX_LINE * 4  # bytes kept of a line: _MAX_LINE characters of UTF-8
    number, partial, pending, scanned = 1, b"", False, 0  # pending: line `number` has bytes
    with files.open_file(path) as source:
        while scanned < _MAX_SCAN_BYTES and (chunk := source.read(_CHUNK)):
            if scanned == 0 and b"\0" in chunk[:8192]:
                return None
            scanned += len(chunk)
            *complete, rest = chunk.split(b"\n")
            for piece in complete:
                if start <= number < start + count:
                    wanted.append((partial + piece)[:cap])
                partial, pending, number = b"", False, number + 1
            pending = pending or bool(rest)
            if start <= number < start + count and len(partial) < cap:
                partial = (partial + rest)[:cap]
        cut = bool(source.read(1))
    if pending and not cut:  # a last line with no newline
        if start <= number < start + count:
            wanted.append(partial)
        number += 1
    text = [line.decode("utf-8", errors="replace") for line in wanted]
    return text, number - 1, cut


def _refused(err: Exception) -> str:
    return f"Refused: {err}. Use a path relative to the workspace root, to a regular file."


class AgentTools:
    def __init__(self, settings: Settings, recorder: Recorder | None = None) -> None:
        self.settings = settings
        self.recorder = recorder  # AGENTS.md goes on the session's record as it is saved

    def _workspace(self, ctx: Any) -> Workspace:
        return resolve_workspace(self.settings, _context(ctx).workspace)

    @activity.defn(name="tool_read_file")
    async def read_file(
        self,
        ctx: RunContextWrapper[AgentContext],
        path: str,
        start_line: int = 1,
        max_lines: int = 200,
    ) -> str:
        """Read lines of a text file of the workspace, numbered. `path` is relative to the
        workspace root; `start_line` (1-based) and `max_lines` (up to 1000) choose the lines.
        The answer says how many lines the file has and how to read on."""
        files = ConfinedDir(self._workspace(ctx).path)
        start, count = max(1, start_line), min(max(1, max_lines), 1000)
        try:
            lines = await asyncio.to_thread(_read_lines, files, path, start, count)
        except FileNotFoundError:
            return f"File not found: {path}"
        except PathNotAllowed as err:
            return _refused(err)
        if lines is None:
            return f"{path} is a binary file: not shown."
        shown, total, cut = lines
        total_text = f"{total}{'+' if cut else ''}"
        if not shown:
            return f"{path} has {total_text} lines; line {start} is past its end."
        body = "\n".join(
            f"{number:>6}  {line[:_MAX_LINE]}{'…' if len(line) > _MAX_LINE else ''}"
            for number, line in enumerate(shown, start)
        )
        end = start + len(shown) - 1
        note = f"[{path}: lines {start}-{end} of {total_text}"
        if end < total:
            note += f"; more with read_file({path!r}, start_line={end + 1})"
        elif cut:
            note += f"; only its first {_MAX_SCAN_BYTES // 2**20} MB are read"
        return f"{note}]\n{body}"

    @activity.defn(name="tool_search")
    async def search(
        self, ctx: RunContextWrapper[AgentContext], pattern: str, path: str = ""
    ) -> str:
        """Search the workspace's files for a regular expression (git grep, extended syntax,
        binary files and what .gitignore ignores left out), optionally under `path`. Each match
        is `file:line: text`; at most 100 are shown."""
        if not pattern.strip():
            return "Refused: give a pattern to search for."
        workspace = self._workspace(ctx)
        try:
            scope = "/".join(split_path(path or "."))
        except PathNotAllowed as err:
            return _refused(err)
        args = [
            "grep",
            "-n",
            "-I",
            "-E",
            "--untracked",
            "--no-color",
            "-e",
            pattern,
            "--",
            scope or ".",
        ]
        try:
            async with asyncio.timeout(_SEARCH_TIMEOUT_S):
                out = await workspace.repo.run(*args, ok=(0, 1))  # 1: no match
        except GitError as err:
            return f"The search failed: {str(err).split('failed:', 1)[-1].strip()}"
        except TimeoutError:
            return f"The search took over {_SEARCH_TIMEOUT_S}s: narrow the pattern or the path."
        matches = out.splitlines()
        if not matches:
            return f"No match for {pattern!r}" + (f" under {path}" if path else "") + "."
        shown = [
            f"{m[:_MAX_LINE]}{'…' if len(m) > _MAX_LINE else ''}" for m in matches[:_MAX_MATCHES]
        ]
        if len(matches) > _MAX_MATCHES:
            shown.append(
                f"… {len(matches) - _MAX_MATCHES} more matches: narrow the pattern, or search under "
                "a path"
            )
        return "\n".join(shown)

    @activity.defn(name="tool_list_files")
    async def list_files(
        self,
        ctx: RunContextWrapper[AgentContext],
        path: str = ".",
        depth: int = 3,
        offset: int = 0,
    ) -> str:
        """List the workspace's files under `path` ('.' for the root), `depth` levels deep,
        with sizes; what .gitignore ignores is left out. Long listings come in pages: the answer
        says the `offset` of the next one."""
        workspace = self._workspace(ctx)
        try:
            scope = "/".join(split_path(path or "."))
        except PathNotAllowed as err:
            return _refused(err)
        args = ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", scope or "."]
        names = sorted({n for n in (await workspace.repo.run(*args)).split("\0") if n})
        entries = _entries(names, scope, max(1, depth))
        if not entries:
            return f"No files under {path}." if scope else "No files yet."
        page = entries[max(0, offset) : max(0, offset) + _MAX_LISTED]
        sizes = await asyncio.to_thread(_sizes, ConfinedDir(workspace.path), page)
        lines = [f"{name}{sizes.get(name, '')}" for name in page]
        if offset + len(page) < len(entries):
            lines.append(
                f"… {len(entries) - offset - len(page)} more: list_files({path!r}, depth={depth},"
                f" offset={offset + len(page)})"
            )
        return "\n".join(lines)

    @activity.defn(name="tool_read_agents_md")
    async def read_agents_md(self, ctx: RunContextWrapper[AgentContext]) -> str:
        """Read AGENTS.md, the requirements document all roles work from."""
        files = ConfinedDir(self._workspace(ctx).path)
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
        workspace = self._workspace(ctx)
        try:
            # A new file replaces whatever is there, a link included: never written through.
            await asyncio.to_thread(ConfinedDir(workspace.path).write_text, AGENTS_MD, content)
        except PathNotAllowed as err:
            return _refused(err)
        # Committed at once: a codex task starts from a clean worktree (its retry point).
        _, commit = await commit_all(workspace.repo, "codexflow: AGENTS.md saved", AGENTS_MD)
        if workspace.project_id and workspace.name:  # on the branch off this host, too
            await ProjectRepos(self.settings).publish(workspace.project_id, workspace.name, commit)
        if self.recorder is not None:  # kept whatever happens to the run later
            await self.recorder.agents_md_saved(_context(ctx).session_id, content)
        return f"AGENTS.md saved ({len(content)} characters)."

    @activity.defn(name="read_workspace_text")
    async def read_workspace_text(self, input: ReadTextInput) -> str | None:
        """A workspace file's text for a workflow (None when missing or not a regular file)."""
        files = ConfinedDir(resolve_workspace(self.settings, input.workspace).path)
        try:
            return await asyncio.to_thread(files.read_text, input.path, input.max_chars)
        except (PathNotAllowed, IsADirectoryError):
            return None


def _context(ctx: Any) -> AgentContext:
    """The run context a tool activity was called with (as the plugin passes it, or a dict)."""
    return AgentContext.model_validate(
        ctx.context if isinstance(ctx, RunContextWrapper) else ctx["context"]
    )


def _entries(names: list[str], scope: str, depth: int) -> list[str]:
    """Files within ``depth`` levels of ``scope``, and the directories where deeper ones start
    (``dir/`` entries)."""
    prefix = f"{scope}/" if scope and scope != "." else ""
    seen: dict[str, None] = {}
    for name in names:
        rest = name.removeprefix(prefix).split("/")
        if len(rest) <= depth:
            seen[name] = None
        else:
            seen[prefix + "/".join(rest[:depth]) + "/"] = None
    return list(seen)


def _sizes(files: ConfinedDir, names: list[str]) -> dict[str, str]:
    sizes = {}
    for name in names:
        if name.endswith("/"):
            continue
        try:
            info = files.lstat(name)
        except PathNotAllowed:
            continue
        if info is not None:
            sizes[name] = f" ({info.st_size} bytes)"
    return sizes

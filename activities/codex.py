"""The codex runner: one ``codex exec`` run as a durable, cancellable, heartbeating activity.

Contract: the native binary, stdin ``/dev/null``, its own process group, a private
``CODEX_HOME``, an environment without secrets codex does not need, ``--json`` events parsed as they
arrive, heartbeats with progress, SIGTERM then SIGKILL on cancel or timeout, and a retry that first
restores the workspace to the task's starting checkpoint so two attempts never stack their edits.
The full JSONL output goes to the event log (the database), never into workflow history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.codex_events import (
    CodexEvent,
    ErrorEvent,
    Garbage,
    ItemEvent,
    ThreadStarted,
    TurnCompleted,
    TurnFailed,
    Unknown,
    describe,
    parse_line,
)
from activities.records import Recorder
from activities.sandbox import TaskBox, task_box
from activities.workspace import (
    Workspace,
    checkpoint,
    refusing_untrusted_config,
    resolve_workspace,
    restore,
)
from config import Sandbox, Settings
from core.children import die_with_parent
from core.codex_cli import PROVIDER_KEY_ENV, codex_env, find_codex_binary
from core.confined import ConfinedDir, PathNotAllowed
from core.repos import ProjectRepos
from core.vocabulary import CodexEventPayload, CodexStderr, CodexTaskState, EventKind
from observability import metrics
from store.batcher import EventBatcher
from workflows.types.codex import CodexResult, CodexTaskInput, TokenUsage

__all__ = ["CodexRunner", "codex_command"]

T = TypeVar("T")

_LAST_MESSAGE = "last-message.txt"
_MAX_LINE = 64 * 1024 * 1024  # command output arrives inside one JSON line; allow it to be large
_STDERR_TAIL = 4000
_MAX_STDERR_EVENTS = 2000  # stderr lines logged per attempt; the tail keeps the last


def codex_command(
    settings: Settings,
    binary: Path,
    input: CodexTaskInput,
    workspace: Path,
    last_message: Path,
    sandbox: Sandbox,
) -> list[str]:
    cmd = [str(binary), "exec", "--json", "--skip-git-repo-check", "-C", str(workspace)]
    cmd += ["-s", sandbox]
    if model := input.model or settings.codex_model:
        cmd += ["-m", model]
    if settings.codex_base_url:
        provider = (
            '{name="codexflow",wire_api="responses",'
            f'base_url="{settings.codex_base_url}",env_key="{PROVIDER_KEY_ENV}"}}'
        )
        cmd += ["-c", 'model_provider="codexflow"', "-c", f"model_providers.codexflow={provider}"]
    # Commands codex runs get only a core environment, and nothing phones home.
    cmd += ["-c", 'shell_environment_policy.inherit="core"', "-c", "analytics.enabled=false"]
    cmd += ["--disable", "plugins", "-o", str(last_message), "--", input.prompt]
    return cmd


def _raw(text: str, event: CodexEvent) -> dict:
    """The event as codex printed it (garbage lines are kept as text)."""
    if isinstance(event, Garbage):
        return {"type": "garbage", "line": event.line}
    return json.loads(text)


class CodexRunner:
    """Runs codex tasks; one instance per worker, holding its settings."""

    def __init__(self, settings: Settings, recorder: Recorder) -> None:
        self.settings = settings
        self.recorder = recorder

    @activity.defn(name="run_codex_task")
    async def run(self, input: CodexTaskInput) -> CodexResult:
        if not input.prompt.strip():
            raise ApplicationError(
                "empty prompt: tell codex what to do", type="InvalidInput", non_retryable=True
            )
        try:
            sandbox = self.settings.sandbox_for(input.sandbox)
        except ValueError as err:
            raise ApplicationError(str(err), type="SandboxNotAllowed", non_retryable=True) from None
        workspace = resolve_workspace(self.settings, input.workspace)
        binary = find_codex_binary(self.settings)
        info = activity.info()
        previous = info.heartbeat_details[0] if info.heartbeat_details else {}
        # The worktree is clean when a task starts (every writer commits): HEAD is where a retry
        # comes back to, so that two attempts never stack their edits.
        base = input.base_commit or previous.get("base_commit")
        with refusing_untrusted_config():
            if base and info.attempt > 1:
                await restore(workspace.repo, base)
            base = base or (await workspace.repo.run("rev-parse", "HEAD")).strip()
            progress = _Progress(base_commit=base, attempt=info.attempt)
            activity.heartbeat(progress.details())
            project = workspace.project_id or workspace.path.name
            shown = self._shown_git(workspace)
            with task_box(self.settings, workspace.path, shown, project) as box:
                return await self._execute(input, workspace, box, binary, sandbox, progress)

    def _shown_git(self, workspace: Workspace) -> tuple[Path, ...]:
        """What of git codex may read (so that its `git status` works): a project worktree's
        clone and the central objects it borrows, or a standalone workspace's git directory."""
        if workspace.project_id is None:
            return (workspace.repo.git_dir,)
        repos = ProjectRepos(self.settings)
        central = repos.central(workspace.project_id).git_dir / "objects"
        return (repos.local(workspace.project_id).git_dir, central)

    async def _execute(
        self,
        input: CodexTaskInput,
        workspace: Workspace,
        box: TaskBox,
        binary: Path,
        sandbox: Sandbox,
        progress: _Progress,
    ) -> CodexResult:
        timeout = input.timeout_s or self.settings.codex_timeout_s
        stderr_tail: deque[str] = deque(maxlen=50)
        last_message = box.inside_tmp / _LAST_MESSAGE
        command = codex_command(self.settings, binary, input, box.workspace, last_message, sandbox)
        with contextlib.ExitStack() as running:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *box.wrap(self.settings, binary, command),
                cwd=box.workspace,
                env=box.env(codex_env(self.settings)),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,
                limit=_MAX_LINE,
            )
            # Counted as active until the block ends, after codex has been reaped on every path.
            running.enter_context(metrics.codex_process())
            progress.pid = proc.pid
            activity.heartbeat(progress.details())
            try:
                info = activity.info()
                execution = f"{info.workflow_run_id}/{info.activity_id}/{info.attempt}"
                progress.attempt = await self.recorder.codex_started(
                    input, execution, proc.pid, info.attempt
                )
                async with EventBatcher(self.recorder.events) as batch:
                    async with asyncio.timeout(timeout):
                        await asyncio.gather(
                            self._read_events(proc, batch, input, progress),
                            self._read_stderr(proc, batch, input, progress, stderr_tail),
                            _heartbeat_while(proc, progress),
                        )
                        await proc.wait()
            except TimeoutError:
                await _terminate(proc, self.settings.codex_kill_grace_s)
                _ended(input, CodexTaskState.TIMEOUT, proc.returncode, time.monotonic() - started)
                message = f"codex did not finish within {timeout:g}s (CODEXFLOW_CODEX_TIMEOUT_S)"
                await self._finished(
                    input, progress, CodexTaskState.FAILED, None, message, stderr_tail
                )
                raise ApplicationError(message, type="CodexTimeout") from None
            except BaseException:  # cancellation, worker shutdown: never leave codex running
                await _terminate(proc, self.settings.codex_kill_grace_s)
                _ended(input, CodexTaskState.CANCELLED, proc.returncode, time.monotonic() - started)
                await self._finished(
                    input, progress, CodexTaskState.CANCELLED, None, None, stderr_tail
                )
                raise
            final = await _last_message(box.tmp, self.settings.tool_output_max_chars * 4)

        exit_code = proc.returncode if proc.returncode is not None else -1
        success = exit_code == 0 and not progress.failed
        # What codex did is committed (and published): a failed attempt too, so that the next
        # task starts clean (a retry restores its base anyway).
        state = "" if success else " (failed)"
        message = f"codexflow: codex task {input.task_id}{state}"
        done = await _beating(
            checkpoint(workspace, self.settings, message, since=progress.base_commit), progress
        )
        error = progress.error or ("".join(stderr_tail)[-_STDERR_TAIL:].strip() or None)
        result = CodexResult(
            task_id=input.task_id,
            attempt=progress.attempt,
            exit_code=exit_code,
            success=success,
            final_message=final or progress.last_message,
            error=None if success else error,
            changed_files=done.changed_files,
            commit=done.commit,
            usage=progress.usage,
            duration_s=round(time.monotonic() - started, 3),
            thread_id=progress.thread_id,
            events=progress.events,
            output_tail=progress.tail(self.settings.tool_output_max_chars),
        )
        status = CodexTaskState.COMPLETED if success else CodexTaskState.FAILED
        _ended(input, status, exit_code, result.duration_s)
        await self._finished(input, progress, status, result, result.error, stderr_tail)
        if not success:
            raise ApplicationError(
                f"codex failed (exit {exit_code}): {result.error or 'no error message'}",
                result.model_dump(),
                type="CodexFailed",
            )
        return result

    async def _finished(
        self,
        input: CodexTaskInput,
        progress: _Progress,
        status: CodexTaskState,
        result: CodexResult | None,
        error: str | None,
        stderr_tail: deque[str],
    ) -> None:
        # Recording the end must not mask how codex ended (a cancel, a timeout, a failure).
        try:
            await self.recorder.codex_finished(
                input,
                progress.attempt,
                status,
                result,
                error,
                "".join(stderr_tail)[-_STDERR_TAIL:],
                final=_no_attempt_follows(status),
            )
        except Exception:
            activity.logger.exception("could not record the end of codex task %s", input.task_id)

    async def _read_events(
        self,
        proc: asyncio.subprocess.Process,
        batch: EventBatcher,
        input: CodexTaskInput,
        progress: _Progress,
    ) -> None:
        """Each JSONL line goes to the event log as it arrives, and feeds the progress."""
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            text = line.decode("utf-8", errors="replace")
            if (event := parse_line(text)) is None:
                continue
            progress.observe(event)
            payload = event.data if isinstance(event, Unknown) else _raw(text, event)
            await batch.add(
                self.recorder.codex_event(
                    input, progress.attempt, EventKind.CODEX_EVENT, CodexEventPayload(**payload)
                )
            )

    async def _read_stderr(
        self,
        proc: asyncio.subprocess.Process,
        batch: EventBatcher,
        input: CodexTaskInput,
        progress: _Progress,
        tail: deque[str],
    ) -> None:
        """Each stderr line goes to the tail (for the error) and, up to a bound, to the event log
        (terminals show it as codex's stderr)."""
        assert proc.stderr is not None
        logged = 0
        while line := await proc.stderr.readline():
            text = line.decode("utf-8", errors="replace")
            tail.append(text)
            if logged < _MAX_STDERR_EVENTS:
                logged += 1
                await batch.add(
                    self.recorder.codex_event(
                        input,
                        progress.attempt,
                        EventKind.CODEX_STDERR,
                        CodexStderr(line=text.rstrip("\r\n")),
                    )
                )


class _Progress:
    """What the runner has learned so far; heartbeated so a retry knows where it started."""

    def __init__(self, base_commit: str, attempt: int) -> None:
        self.base_commit = base_commit
        self.attempt = attempt
        self.pid: int | None = None
        self.events = 0
        self.thread_id: str | None = None
        self.usage = TokenUsage()
        self.last_message = ""
        self.error: str | None = None
        self.failed = False
        self._tail: deque[str] = deque(maxlen=40)

    def observe(self, event: CodexEvent) -> None:
        self.events += 1
        match event:
            case ThreadStarted(thread_id=thread_id):
                self.thread_id = thread_id
            case TurnCompleted(usage=usage):
                self.usage = self.usage + usage
            case TurnFailed(message=message) | ErrorEvent(message=message):
                self.failed = isinstance(event, TurnFailed) or self.failed
                self.error = message
            case ItemEvent(kind="item.completed", item_type="agent_message", item=item):
                self.last_message = str(item.get("text", ""))
        if line := describe(event):
            self._tail.append(line)

    def tail(self, limit: int) -> str:
        text = "\n".join(self._tail)
        return text if len(text) <= limit else "…" + text[-limit:]

    def details(self) -> dict:
        return {
            "base_commit": self.base_commit,
            "pid": self.pid,
            "events": self.events,
            "thread_id": self.thread_id,
        }


async def _last_message(tmp: Path, limit: int) -> str:
    """Codex's last message, from the task's tmp (which codex may have filled with anything)."""
    try:
        text = await asyncio.to_thread(ConfinedDir(tmp).read_text, _LAST_MESSAGE, limit)
    except PathNotAllowed:
        return ""
    return (text or "").strip()


def _ended(
    input: CodexTaskInput, outcome: CodexTaskState, exit_code: int | None, seconds: float
) -> None:
    metrics.codex_finished(outcome, exit_code, seconds)
    activity.logger.info(
        "codex task %s %s (exit %s) in %.1fs", input.task_id, outcome, exit_code, seconds
    )


async def _beating(work: Awaitable[T], progress: _Progress) -> T:
    """``work``'s result, heartbeating every second meanwhile (git over a big tree takes time)."""
    task = asyncio.ensure_future(work)
    while not task.done():
        activity.heartbeat(progress.details())
        await asyncio.wait({task}, timeout=1.0)
    return task.result()


async def _heartbeat_while(proc: asyncio.subprocess.Process, progress: _Progress) -> None:
    # The SDK throttles what it sends; beating every second keeps silent stretches covered.
    while proc.returncode is None:
        activity.heartbeat(progress.details())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=1.0)


async def _terminate(proc: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM the whole process group, SIGKILL it after ``grace_s``; reap codex."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=grace_s)
    # Whatever is left in the group (codex ignoring TERM, or children it spawned) is killed.
    _signal_group(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), timeout=5)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _no_attempt_follows(status: CodexTaskState) -> bool:
    """Whether this attempt is the task's last: it succeeded, it was cancelled (not by a worker
    shutting down, which Temporal retries elsewhere), or its retries are used up."""
    if status is CodexTaskState.COMPLETED:
        return True
    if status is CodexTaskState.CANCELLED:
        return not activity.is_worker_shutdown()
    info = activity.info()
    limit = info.retry_policy.maximum_attempts if info.retry_policy else 0
    return 0 < limit <= info.attempt

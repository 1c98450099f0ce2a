#!/usr/bin/env python3
"""A fake ``codex`` executable for fast tests (stdlib only, runs with any python3).

It takes the command line the real binary gets::

    codex exec --json [--skip-git-repo-check] [-C DIR] [-s SANDBOX] [-m MODEL] [-c key=value]...
        [--enable X] [--disable X] [--ephemeral] [--ignore-user-config] [-o FILE] PROMPT
    codex --version
    codex login status

and prints JSONL events shaped like the real ``codex exec --json`` (0.169.0). What happens is
steered by ``@fake key[=value]`` lines in the prompt, applied in order:

    write=REL:TEXT  append=REL:TEXT  delete=REL   file_change items (TEXT decodes \\n, \\t, \\\\)
    cmd=SHELL       run SHELL in the workspace     command_execution item
    events=N        N cheap synthetic command_execution items
    delay=SECONDS   sleep after every printed event
    sleep=SECONDS   sleep once, here
    hang            sleep until killed
    ignore_term     ignore SIGTERM (callers must escalate to SIGKILL)
    child           start `sleep 1000` in our process group, report child_pid=N
    garbage         print non-JSON lines and an event of unknown type
    exit=N          fail with exit code N (default 1)
    error=MESSAGE   fail with MESSAGE: `error` + `turn.failed` events, MESSAGE on stderr
    tokens=IN,OUT   usage reported by turn.completed
    message=TEXT    final agent message (default "Done.")
    message_bytes=N a final agent message of N bytes of filler text
    pidfile=PATH    write our pid there before anything else (relative to the workspace)

It writes nothing outside the workspace, the -o file and the pidfile (CODEX_HOME is left alone).
Like the real one it reads stdin to EOF before starting, so run it with stdin=/dev/null.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION = "codex-cli 0.169.0 (fake)"
DIRECTIVE = "@fake"
SANDBOXES = ("read-only", "workspace-write", "danger-full-access")
SETTINGS = {
    "delay",
    "tokens",
    "message",
    "message_bytes",
    "exit",
    "error",
    "ignore_term",
    "pidfile",
}
ACTIONS = {"write", "append", "delete", "cmd", "events", "sleep", "hang", "child", "garbage"}


class UsageError(Exception):
    """A bad command line or directive: exit 2, like the real CLI's argument errors."""


# --- directives ---------------------------------------------------------------------------------


def parse_directives(prompt: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of the prompt's ``@fake key[=value]`` lines, in order."""
    directives = []
    for line in prompt.splitlines():
        words = line.strip().split(maxsplit=1)
        if len(words) == 2 and words[0] == DIRECTIVE:
            key, _, value = words[1].partition("=")
            if key not in SETTINGS | ACTIONS:
                raise UsageError(f"unknown {DIRECTIVE} directive: {key!r}")
            directives.append((key, value))
    return directives


def unescape(text: str) -> str:
    """Decode the few backslash escapes a one-line directive needs."""
    escapes = {"n": "\n", "t": "\t", "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[0]), text)


@dataclass
class Settings:
    delay: float = 0.0
    tokens: tuple[int, int] = (100, 20)
    message: str = "Done."
    exit_code: int | None = None
    error: str | None = None
    ignore_term: bool = False
    pidfile: str | None = None

    @classmethod
    def from_directives(cls, directives: Sequence[tuple[str, str]]) -> Settings:
        settings = cls()
        for key, value in directives:
            try:
                settings.apply(key, value)
            except ValueError as error:
                raise UsageError(f"bad {DIRECTIVE} {key}={value!r}: {error}") from None
        return settings

    def apply(self, key: str, value: str) -> None:
        """Take one directive into account; actions are not settings and are skipped."""
        if key == "delay":
            self.delay = float(value)
        elif key == "tokens":
            tokens_in, tokens_out = value.split(",")
            self.tokens = (int(tokens_in), int(tokens_out))
        elif key == "message":
            self.message = unescape(value)
        elif key == "message_bytes":
            filler = "codex output: all checks pass, nothing else to report. "
            self.message = (filler * (int(value) // len(filler) + 1))[: int(value)]
        elif key == "exit":
            self.exit_code = int(value or 1)
        elif key == "error":
            self.error = unescape(value) or "fake codex failure"
        elif key == "ignore_term":
            self.ignore_term = True
        elif key == "pidfile":
            self.pidfile = value

    @property
    def failed(self) -> bool:
        return self.exit_code is not None or self.error is not None


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One ``codex exec`` run: prints events and acts on the workspace."""

    workspace: Path
    settings: Settings
    as_json: bool = True
    _items: int = field(default=0, init=False)

    def emit(self, event: dict[str, Any]) -> None:
        if self.as_json:
            self.print_line(json.dumps(event, ensure_ascii=False, separators=(",", ":")))

    def print_line(self, line: str) -> None:
        # Flushed line by line so readers see events as they happen, like the real one.
        print(line, flush=True)
        if self.settings.delay:
            time.sleep(self.settings.delay)

    def item(self, item_type: str, **fields: Any) -> dict[str, Any]:
        item = {"id": f"item_{self._items}", "type": item_type, **fields}
        self._items += 1
        return item

    def path(self, relative: str) -> Path:
        path = (self.workspace / relative).resolve()
        if not path.is_relative_to(self.workspace):
            raise UsageError(f"path escapes the workspace: {relative}")
        return path

    # -- actions --

    def change_file(self, relative: str, text: str | None, append: bool = False) -> None:
        """Write, append to, or (``text is None``) delete a workspace file."""
        path = self.path(relative)
        existed = path.exists()
        kind = "delete" if text is None else ("update" if existed else "add")
        item = self.item("file_change", changes=[{"path": str(path), "kind": kind}])
        self.emit({"type": "item.started", "item": {**item, "status": "in_progress"}})
        if text is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a" if append else "w") as f:
                f.write(text)
        status = "failed" if text is None and not existed else "completed"
        self.emit({"type": "item.completed", "item": {**item, "status": status}})

    def command_started(self, command: str) -> dict[str, Any]:
        item = self.item(
            "command_execution",
            command=command,
            aggregated_output="",
            exit_code=None,
            status="in_progress",
        )
        self.emit({"type": "item.started", "item": item})
        return item

    def command_completed(self, item: dict[str, Any], output: str, exit_code: int) -> None:
        status = "completed" if exit_code == 0 else "failed"
        done = {"aggregated_output": output, "exit_code": exit_code, "status": status}
        self.emit({"type": "item.completed", "item": {**item, **done}})

    def command(self, command: str) -> None:
        shell = "/bin/bash" if Path("/bin/bash").exists() else "/bin/sh"
        item = self.command_started(f"{shell} -lc {shlex.quote(command)}")
        result = subprocess.run(
            [shell, "-c", command],
            cwd=self.workspace,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.command_completed(item, result.stdout, result.returncode)

    def synthetic_commands(self, count: int) -> None:
        for i in range(count):
            self.command_completed(self.command_started(f"/bin/bash -lc 'echo {i}'"), f"{i}\n", 0)

    def spawn_child(self) -> None:
        item = self.command_started("/bin/bash -lc 'sleep 1000 &'")
        # Same process group on purpose: whoever cancels us must take the whole group down.
        child = subprocess.Popen(
            ["sleep", "1000"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.command_completed(item, f"child_pid={child.pid}\n", 0)

    def garbage(self) -> None:
        self.print_line("this is not JSON")
        self.print_line('{"type": "item.completed", "item": ')
        self.print_line("")
        self.emit({"type": "fake.unknown_event", "payload": {"answer": 42}})

    def act(self, key: str, value: str) -> None:
        handlers: dict[str, Callable[[], None]] = {
            "write": lambda: self.change_file(*split_target(value)),
            "append": lambda: self.change_file(*split_target(value), append=True),
            "delete": lambda: self.change_file(value, None),
            "cmd": lambda: self.command(value),
            "events": lambda: self.synthetic_commands(int(value)),
            "sleep": lambda: time.sleep(float(value)),
            "hang": hang,
            "child": self.spawn_child,
            "garbage": self.garbage,
        }
        handlers[key]()

    # -- the whole turn --

    def run(self, thread_id: str, directives: Sequence[tuple[str, str]]) -> int:
        self.emit({"type": "thread.started", "thread_id": thread_id})
        self.emit({"type": "turn.started"})
        for key, value in directives:
            if key in ACTIONS:
                self.act(key, value)
        return self.fail() if self.settings.failed else self.succeed()

    def succeed(self) -> int:
        text = self.settings.message
        self.emit({"type": "item.completed", "item": self.item("agent_message", text=text)})
        tokens_in, tokens_out = self.settings.tokens
        usage = {
            "input_tokens": tokens_in,
            "cached_input_tokens": 0,
            "cache_write_input_tokens": 0,
            "output_tokens": tokens_out,
            "reasoning_output_tokens": 0,
        }
        self.emit({"type": "turn.completed", "usage": usage})
        if not self.as_json:
            self.print_line(text)
        return 0

    def fail(self) -> int:
        message = self.settings.error or "fake codex failure"
        self.emit({"type": "error", "message": message})
        self.emit({"type": "turn.failed", "error": {"message": message}})
        print(message, file=sys.stderr, flush=True)
        return self.settings.exit_code if self.settings.exit_code is not None else 1


def split_target(value: str) -> tuple[str, str]:
    relative, sep, text = value.partition(":")
    if not sep:
        raise UsageError(f"expected REL/PATH:TEXT, got {value!r}")
    return relative, unescape(text)


def hang() -> None:
    while True:
        time.sleep(3600)


def final_message(settings: Settings) -> str:
    # The real binary leaves an empty -o file behind when the turn fails.
    return "" if settings.failed else settings.message


# --- command line -------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise UsageError(message)


def exec_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="codex exec", allow_abbrev=False, add_help=False)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-git-repo-check", action="store_true")
    parser.add_argument("-C", "--cd", type=Path)
    parser.add_argument("-s", "--sandbox", choices=SANDBOXES, default="read-only")
    parser.add_argument("-m", "--model")
    parser.add_argument("-c", "--config", action="append", default=[])
    parser.add_argument("--enable", action="append", default=[])
    parser.add_argument("--disable", action="append", default=[])
    parser.add_argument("--ephemeral", action="store_true")
    parser.add_argument("--ignore-user-config", action="store_true")
    parser.add_argument("-o", "--output-last-message", type=Path)
    parser.add_argument("--output-schema", type=Path)
    parser.add_argument("args", nargs="*", metavar="PROMPT")
    return parser


def read_prompt(args: Sequence[str]) -> tuple[str | None, str]:
    """``(thread_id to resume or None, prompt)``; stdin is appended like the real one does."""
    thread_id = None
    if args[:1] == ["resume"]:
        if len(args) < 2:
            raise UsageError("resume needs a thread id")
        thread_id, args = args[1], args[2:]
    if len(args) > 1:
        raise UsageError(f"unexpected argument {args[1]!r}")
    prompt = args[0] if args else ""
    if sys.stdin is not None and not sys.stdin.isatty():
        # The real binary reads stdin to EOF too, so an open pipe hangs it the same way.
        print("Reading additional input from stdin...", file=sys.stderr, flush=True)
        prompt = "\n".join(part for part in (prompt, sys.stdin.read()) if part)
    if not prompt.strip():
        raise UsageError("no prompt provided")
    return thread_id, prompt


def in_git_repo(path: Path) -> bool:
    """As codex decides: a repository's ``.git`` (a directory with a HEAD, or a worktree's
    ``gitdir:`` file) here or above; an empty ``.git`` directory is not one."""
    for parent in (path, *path.parents):
        dot_git = parent / ".git"
        if (dot_git / "HEAD").is_file():
            return True
        if dot_git.is_file() and dot_git.read_text(errors="replace").startswith("gitdir:"):
            return True
    return False


def codex_exec(argv: Sequence[str]) -> int:
    options = exec_parser().parse_args(argv)
    thread_id, prompt = read_prompt(options.args)
    directives = parse_directives(prompt)
    settings = Settings.from_directives(directives)

    workspace = (options.cd or Path.cwd()).resolve()
    output_file = options.output_last_message
    if output_file is not None:
        output_file = output_file.resolve()  # relative to where we were started, not to -C
    if not workspace.is_dir():
        print(f"Error: No such file or directory: {workspace}", file=sys.stderr)
        return 1
    if not options.skip_git_repo_check and not in_git_repo(workspace):
        print(
            "Not inside a trusted directory and --skip-git-repo-check was not specified.",
            file=sys.stderr,
        )
        return 1
    os.chdir(workspace)

    if settings.ignore_term:
        # A Python handler rather than SIG_IGN, so children started later don't inherit it.
        signal.signal(signal.SIGTERM, lambda *_: None)
    run = Run(workspace, settings, as_json=options.json)
    if settings.pidfile:
        Path(settings.pidfile).resolve().write_text(f"{os.getpid()}\n")  # relative to -C

    code = run.run(thread_id or str(uuid.uuid4()), directives)
    if output_file is not None:
        output_file.write_text(final_message(settings))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args in (["--version"], ["-V"]):
            print(VERSION)
            return 0
        if args == ["login", "status"]:
            print("Logged in using an API key (fake)")
            return 0
        if args[:1] == ["exec"]:
            return codex_exec(args[1:])
        raise UsageError(f"unsupported command line: {shlex.join(args)}")
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

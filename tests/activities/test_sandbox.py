"""The outer sandbox of a codex task: what it mounts, its codex home, and when it is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.sandbox import INSIDE_CODEX_HOME, codex_home_of, task_box
from config import Settings
from core.workspaces import repo_of


def _pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, arg in enumerate(args) if arg == flag]


def test_a_task_sees_its_workspace_its_git_dir_read_only_and_its_own_codex_home(
    settings: Settings, workspace: Path
) -> None:
    (settings.codex_home / "auth.json").parent.mkdir(parents=True, exist_ok=True)
    (settings.codex_home / "auth.json").write_text('{"token": "t"}')
    git_dir = repo_of(settings, workspace).git_dir
    binary = Path("/opt/codex/vendor/x86_64/bin/codex")
    with task_box(settings, workspace, (git_dir,), "p") as box:
        args = box.wrap(settings, binary, ["codex", "exec"])
        env = box.env({"PATH": "/usr/bin"})
        home = box.codex_home
        assert box.tmp.is_dir()
    assert not box.tmp.exists()  # the private tmp goes with the task
    assert args[-3:] == ["--", "codex", "exec"]
    assert (str(workspace), str(workspace)) in _pairs(args, "--bind")
    assert (str(box.tmp), "/tmp") in _pairs(args, "--bind")
    assert (str(home), INSIDE_CODEX_HOME) in _pairs(args, "--bind")
    assert (str(git_dir), str(git_dir)) in _pairs(args, "--ro-bind")
    assert ("/opt/codex/vendor/x86_64", "/opt/codex/vendor/x86_64") in _pairs(args, "--ro-bind")
    assert {"--unshare-user", "--unshare-pid", "--die-with-parent"} <= set(args)
    assert not any(
        str(settings.workspaces_root) == a or str(settings.codex_home) == a for a in args
    )
    assert env["CODEX_HOME"] == INSIDE_CODEX_HOME and env["HOME"] == env["TMPDIR"] == "/tmp"
    # The project's home has the operator's login copied in, readable by its owner only.
    assert home == codex_home_of(settings, "p") and (home / "auth.json").stat().st_mode & 0o077 == 0


def test_a_missing_bubblewrap_is_a_clear_error_not_an_unsandboxed_run(
    settings: Settings, workspace: Path
) -> None:
    settings = settings.model_copy(update={"bwrap_bin": "no-such-bwrap"})
    git_dir = repo_of(settings, workspace).git_dir
    with (
        task_box(settings, workspace, (git_dir,), "p") as box,
        pytest.raises(ApplicationError) as missing,
    ):
        box.wrap(settings, Path("/bin/codex"), ["codex"])
    assert missing.value.non_retryable and "apt-get install bubblewrap" in str(missing.value)


def test_without_isolation_codex_runs_as_is(settings: Settings, workspace: Path) -> None:
    settings = settings.model_copy(update={"codex_isolation": "none"})
    with task_box(settings, workspace, (repo_of(settings, workspace).git_dir,), "p") as box:
        assert box.wrap(settings, Path("/bin/codex"), ["codex", "exec"]) == ["codex", "exec"]
        assert box.env({})["CODEX_HOME"] == str(box.codex_home)

"""The agents' workspace tools on a real repository: any line of any file, search, listing."""

from __future__ import annotations

from pathlib import Path

import pytest
from agents import RunContextWrapper
from temporalio.testing import ActivityEnvironment

from activities.repositories import overview
from activities.tools import AgentTools
from config import Settings
from core.repos import ProjectRepos
from core.vocabulary import Role
from workflows.types.workspace import AgentContext


@pytest.fixture
async def worktree(settings: Settings, project_id: str, tmp_path: Path) -> Path:
    """A session's worktree of a project whose default branch holds a 5,000-line module."""
    repos = ProjectRepos(settings)
    source = tmp_path / "source"
    (source / "pkg").mkdir(parents=True)
    lines = [f"value_{n} = {n}" for n in range(1, 5000)] + ["def needle(): return 42"]
    (source / "pkg" / "big.py").write_text("\n".join(lines) + "\n")
    (source / "README.md").write_text("# demo\n")
    (source / ".gitignore").write_text("dist/\n")
    for n in range(450):
        (source / "pkg" / f"m{n:03}.py").write_text("")
    await repos.commit_files(project_id, "main", "code", directory=source)
    made, _ = await repos.add_worktree(project_id, "s1", await repos.resolve(project_id, "main"))
    assert made.work_tree is not None
    (made.work_tree / "dist").mkdir()
    (made.work_tree / "dist" / "bundle.js").write_text("ignored")
    return made.work_tree


def context(worktree: Path) -> RunContextWrapper[AgentContext]:
    return RunContextWrapper(
        AgentContext(session_id="s1", project_id="p1", workspace=str(worktree), role=Role.QA_QC)
    )


async def test_read_file_reaches_the_last_lines_of_a_long_file(
    settings: Settings, worktree: Path
) -> None:
    tools, env = AgentTools(settings), ActivityEnvironment()
    first = await env.run(tools.read_file, context(worktree), "pkg/big.py")
    assert first.startswith("[pkg/big.py: lines 1-200 of 5000; more with read_file(")
    assert "start_line=201" in first and "     1  value_1 = 1" in first

    last = await env.run(tools.read_file, context(worktree), "pkg/big.py", 4996, 50)
    assert last.splitlines() == [
        "[pkg/big.py: lines 4996-5000 of 5000]",
        "  4996  value_4996 = 4996",
        "  4997  value_4997 = 4997",
        "  4998  value_4998 = 4998",
        "  4999  value_4999 = 4999",
        "  5000  def needle(): return 42",
    ]
    past = await env.run(tools.read_file, context(worktree), "pkg/big.py", 6000)
    assert past == "pkg/big.py has 5000 lines; line 6000 is past its end."


async def test_search_finds_a_symbol_with_its_line(settings: Settings, worktree: Path) -> None:
    tools, env = AgentTools(settings), ActivityEnvironment()
    found = await env.run(tools.search, context(worktree), r"def needle\(")
    assert found == "pkg/big.py:5000:def needle(): return 42"
    many = await env.run(tools.search, context(worktree), r"^value_", "pkg")
    assert len(many.splitlines()) == 101 and "4899 more matches" in many.splitlines()[-1]
    assert "No match" in await env.run(tools.search, context(worktree), "nowhere_at_all")
    # Ignored files are not searched; a path outside the worktree is refused.
    assert "No match" in await env.run(tools.search, context(worktree), "ignored")
    assert "Refused" in await env.run(tools.search, context(worktree), "x", "../..")


async def test_list_files_follows_gitignore_and_pages(settings: Settings, worktree: Path) -> None:
    tools, env = AgentTools(settings), ActivityEnvironment()
    top = await env.run(tools.list_files, context(worktree), ".", 1)
    assert top.splitlines() == [".gitignore (6 bytes)", "README.md (7 bytes)", "pkg/"]
    page = await env.run(tools.list_files, context(worktree), "pkg", 1)
    assert len(page.splitlines()) == 301
    assert page.splitlines()[-1] == "… 151 more: list_files('pkg', depth=1, offset=300)"
    rest = await env.run(tools.list_files, context(worktree), "pkg", 1, 300)
    assert rest.splitlines()[-1].startswith("pkg/m449.py") and "more" not in rest


def test_the_overview_names_the_layout_languages_and_tests() -> None:
    files = ["pyproject.toml", "README.md", "src/calc/__init__.py", "src/calc/ops.py", "tests/t.py"]
    text = overview(files)
    assert text.splitlines()[0] == "5 files. Top level:"
    assert "  src/ (2 files)" in text and "Languages: Python (3 files), Markdown (1 files)" in text
    assert "Tests: probably `python -m pytest`" in text
    assert overview([]) == "The repository is empty."

"""The confined file layer, with openat2 and with its component-by-component fallback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import confined
from core.confined import ConfinedDir, PathNotAllowed, split_path


@pytest.fixture(params=["openat2", "fallback"])
def files(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConfinedDir]:
    """A workspace with a file, a directory, a link out of it, a link inside it and a FIFO."""
    saved = confined._has_openat2
    confined._has_openat2 = None if request.param == "openat2" else False
    root, outside = tmp_path / "ws", tmp_path / "outside"
    (root / "src").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    (root / "inner.txt").symlink_to(root / "src" / "app.py")
    os.mkfifo(root / "pipe")
    yield ConfinedDir(root)
    confined._has_openat2 = saved


@pytest.mark.parametrize(
    "bad", ["../x", "a/../../x", "/etc/passwd", "~/x", "a\x00b", "..\\x", "a/../../../etc"]
)
def test_escapes_are_refused(bad: str) -> None:
    with pytest.raises(PathNotAllowed):
        split_path(bad)


def test_git_paths_are_refused_where_asked() -> None:
    assert split_path("./a/./b") == ("a", "b")
    with pytest.raises(PathNotAllowed, match=".git"):
        split_path("x/.GIT/config", allow_git=False)


def test_reads_follow_no_link_and_open_regular_files_only(files: ConfinedDir) -> None:
    assert files.read_text("src/app.py", 100) == "print('hi')\n"
    assert files.read_text("missing.txt", 100) is None
    for path in ("leak.txt", "out/secret.txt", "inner.txt"):  # links, even one that stays inside
        with pytest.raises(PathNotAllowed, match="symbolic link|not a directory"):
            files.read_text(path, 100)
    with pytest.raises(PathNotAllowed, match="not a regular file"):
        files.read_text("pipe", 100)
    with pytest.raises(PathNotAllowed, match="directory"):
        files.read_text("src", 100)


def test_reads_are_bounded(files: ConfinedDir) -> None:
    with (files.root / "big.txt").open("wb") as big:
        big.truncate(10**9)
    data, size = files.read_bytes("big.txt", 1000)
    assert len(data) == 1000 and size == 10**9
    assert str(files.read_text("big.txt", 10)).endswith("[truncated at 10 characters]")


def test_a_write_replaces_a_link_and_never_writes_through_it(files: ConfinedDir) -> None:
    files.write_text("leak.txt", "mine")
    assert not (files.root / "leak.txt").is_symlink()
    assert (files.root / "leak.txt").read_text() == "mine"
    assert (files.root.parent / "outside" / "secret.txt").read_text() == "secret"
    with pytest.raises(PathNotAllowed):
        files.write_text("out/new.txt", "x")
    assert not (files.root.parent / "outside" / "new.txt").exists()


def test_a_staged_file_appears_only_on_commit(files: ConfinedDir) -> None:
    staged = files.stage("new/deep/file.txt")
    staged.file.write(b"data")
    assert not (files.root / "new" / "deep" / "file.txt").exists()
    staged.commit()
    assert (files.root / "new" / "deep" / "file.txt").read_bytes() == b"data"
    discarded = files.stage("other/dir/file.txt")
    discarded.discard()
    assert not (files.root / "other").exists()  # nor the directories made for it


def test_remove_takes_the_link_not_its_target(files: ConfinedDir) -> None:
    assert files.remove("leak.txt") is True
    assert not os.path.lexists(files.root / "leak.txt")
    assert (files.root.parent / "outside" / "secret.txt").exists()
    assert files.remove("leak.txt") is False


def test_walk_lists_links_without_entering_them(files: ConfinedDir) -> None:
    entries = {entry.path: entry for entry in files.walk(".")}
    assert set(entries) == {"src", "src/app.py", "out", "leak.txt", "inner.txt", "pipe"}
    assert entries["out"].is_link and not entries["out"].is_dir
    assert entries["src/app.py"].size == len("print('hi')\n")

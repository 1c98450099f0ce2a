"""Path confinement: every path a user or a model supplies is resolved inside its workspace."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

__all__ = ["PathNotAllowed", "confine", "is_within"]


class PathNotAllowed(ValueError):
    """A user- or model-supplied path that would leave its workspace."""


def confine(root: Path, relative: str) -> Path:
    """Resolve ``relative`` inside ``root``; refuse absolute paths, ``..`` and escaping symlinks."""
    if not relative or "\x00" in relative:
        raise PathNotAllowed("empty path or NUL byte")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or relative.startswith("~"):
        raise PathNotAllowed(f"absolute paths are not allowed: {relative!r}")
    if ".." in pure.parts:
        raise PathNotAllowed(f"'..' is not allowed in paths: {relative!r}")
    base = root.resolve()
    # resolve() follows symlinks, so a link pointing outside the workspace is caught here.
    target = (base / pure).resolve()
    if target != base and base not in target.parents:
        raise PathNotAllowed(f"path escapes the workspace: {relative!r}")
    return target


def is_within(root: Path, path: Path) -> bool:
    base, target = root.resolve(), path.resolve()
    return target == base or base in target.parents

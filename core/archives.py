"""Archives that seed a project (``.tar.gz``, ``.tgz``, ``.tar``, ``.zip``), unpacked without
trusting them.

Refused: an entry that escapes (absolute, ``..``) or lies inside ``.git``; a link pointing out of
the unpacked tree, and any hard link; devices, FIFOs and sockets; more than ``max_entries``
entries; more than ``max_bytes`` unpacked — counted on the bytes as they are written, not taken
from the archive's headers, so a bomb stops at the limit. Everything is written through
``core.confined`` into a fresh directory. When every entry lies under one top-level directory
(``project-main/…``, as downloaded archives have), that directory is dropped.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.confined import ConfinedDir, PathNotAllowed, split_path

__all__ = ["ArchiveRefused", "unpack"]

_CHUNK = 1024 * 1024


class ArchiveRefused(ValueError):
    """An archive codexflow will not unpack; the message says why."""


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # file | dir | link
    link: str = ""
    open: object = None  # () -> BinaryIO for files


def unpack(archive: Path, target: Path, *, max_bytes: int, max_entries: int) -> int:
    """Unpack ``archive`` into the empty directory ``target``; the number of files written."""
    with archive.open("rb") as file:
        head = file.read(512)
    if head.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(archive) as zipped:
            return _write(list(_zip_members(zipped)), target, max_bytes, max_entries)
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            return _write(list(_tar_members(tar)), target, max_bytes, max_entries)
    except tarfile.TarError as err:
        raise ArchiveRefused(f"not a .tar.gz, .tar or .zip archive: {err}") from None


def _tar_members(tar: tarfile.TarFile) -> Iterator[_Member]:
    for member in tar:
        if member.isdir():
            yield _Member(member.name, "dir")
        elif member.issym():
            yield _Member(member.name, "link", member.linkname)
        elif member.isfile():
            yield _Member(member.name, "file", open=lambda m=member: tar.extractfile(m))
        elif member.islnk():
            raise ArchiveRefused(f"{member.name!r} is a hard link: not accepted")
        else:
            raise ArchiveRefused(f"{member.name!r} is a device, FIFO or socket: not accepted")


def _zip_members(zipped: zipfile.ZipFile) -> Iterator[_Member]:
    for info in zipped.infolist():
        mode = info.external_attr >> 16
        if info.is_dir():
            yield _Member(info.filename, "dir")
        elif stat.S_ISLNK(mode):
            yield _Member(info.filename, "link", zipped.read(info).decode(errors="replace"))
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: made without a file type
            raise ArchiveRefused(f"{info.filename!r} is a device, FIFO or socket: not accepted")
        else:
            yield _Member(info.filename, "file", open=lambda i=info: zipped.open(i))


def _write(members: list[_Member], target: Path, max_bytes: int, max_entries: int) -> int:
    if len(members) > max_entries:
        raise ArchiveRefused(f"more than {max_entries} entries (CODEXFLOW_MAX_ARCHIVE_ENTRIES)")
    names = [_parts(member.name) for member in members]
    drop = _common_top(names, members)
    out = ConfinedDir(target)
    written = total = 0
    for member, parts in zip(members, names, strict=True):
        relative = "/".join(parts[drop:])
        if not relative:
            continue
        try:
            if member.kind == "dir":
                out.make_dirs(relative)
            elif member.kind == "link":
                out.symlink(relative, member.link)
            else:
                source: BinaryIO = member.open()  # type: ignore[operator]
                with source, out.replace(relative, allow_git=False) as dest:
                    while chunk := source.read(_CHUNK):
                        total += len(chunk)
                        if total > max_bytes:
                            raise ArchiveRefused(
                                f"it unpacks to more than {max_bytes} bytes "
                                "(CODEXFLOW_MAX_ARCHIVE_BYTES)"
                            )
                        dest.write(chunk)
                written += 1
        except PathNotAllowed as err:
            raise ArchiveRefused(f"{member.name!r}: {err}") from None
    return written


def _parts(name: str) -> tuple[str, ...]:
    try:
        return split_path(name, allow_git=False)
    except PathNotAllowed as err:
        raise ArchiveRefused(f"{name!r}: {err}") from None


def _common_top(names: list[tuple[str, ...]], members: list[_Member]) -> int:
    """1 when every entry lies under one top-level directory, else 0."""
    tops = {parts[0] for parts in names if parts}
    if len(tops) != 1:
        return 0
    top = next(iter(tops))
    only_dir = all(
        len(parts) > 1 or (member.kind == "dir" and parts == (top,))
        for parts, member in zip(names, members, strict=True)
    )
    return 1 if only_dir else 0

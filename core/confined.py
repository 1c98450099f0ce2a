"""Workspace content, touched without ever following a link: the one way codexflow reads, writes,
lists and deletes what lies inside a workspace (the agents' tools, uploads, downloads, the tree,
AGENTS.md, codex's last message).

A workspace is written by codex, which a hostile model steers, so anything in it may be a
symbolic link to anywhere, a FIFO that blocks a reader forever, or a sparse file of many
gigabytes. Every path here therefore:

- is resolved beneath the root without following a link in *any* component: ``openat2`` with
  ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` where the kernel has it (Linux 5.6+), else
  ``O_NOFOLLOW`` component by component from the root's file descriptor;
- opens regular files only (FIFOs are opened non-blocking and refused, as are devices, sockets
  and directories), reads a bounded number of bytes, and
- is written through a temporary file in the same directory and ``rename``, which replaces a
  link itself, never its target.

The methods block: call them from a thread (``asyncio.to_thread``) in async code.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

__all__ = ["ConfinedDir", "Entry", "PathNotAllowed", "Staged", "split_path"]

_TEMP_PREFIX = ".codexflow-tmp-"


class PathNotAllowed(ValueError):
    """A path that would leave its root, pass through a link, or name what is not a regular file."""


def split_path(relative: str, *, allow_git: bool = True) -> tuple[str, ...]:
    """``relative``'s components, '/'-separated ('\\\\' counts as '/'); refuses empty paths, NUL
    bytes, absolute paths, ``~``, ``..``, over-long names and, unless ``allow_git``, ``.git``."""
    if "\x00" in relative:
        raise PathNotAllowed("NUL byte in path")
    text = relative.replace("\\", "/")
    pure = PurePosixPath(text)
    if pure.is_absolute() or text.startswith("~"):
        raise PathNotAllowed(f"absolute paths are not allowed: {relative!r}")
    parts = tuple(part for part in pure.parts if part != ".")
    if ".." in parts:
        raise PathNotAllowed(f"'..' is not allowed in paths: {relative!r}")
    if any(len(part.encode()) > 255 for part in parts) or len(text.encode()) > 4096:
        raise PathNotAllowed("the path or a file name in it is too long")
    if not allow_git and any(part.casefold() == ".git" for part in parts):
        raise PathNotAllowed(f"paths inside .git are not allowed: {relative!r}")
    return parts


@dataclass(frozen=True)
class Entry:
    """One entry of a walk: its '/'-separated path below the walked directory, never followed."""

    path: str
    is_dir: bool
    is_link: bool
    size: int  # bytes for regular files, 0 otherwise


# --- openat2 ---------------------------------------------------------------------------------

_SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    return syscall


_syscall = _load_openat2()
_has_openat2: bool | None = None  # None: not tried yet


def _openat2(dir_fd: int, path: str, flags: int, mode: int) -> int | None:
    """``openat2`` beneath ``dir_fd`` following no link; None when the kernel lacks it."""
    global _has_openat2
    if _syscall is None or _has_openat2 is False:
        return None
    resolve = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
    # The kernel refuses a mode without O_CREAT.
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, resolve)
    fd = _syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd >= 0:
        _has_openat2 = True
        return int(fd)
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and not _has_openat2:  # absent, or refused by seccomp
        _has_openat2 = False
        return None
    raise OSError(err, os.strerror(err), path)


def _escapes(path: PurePosixPath) -> bool:
    """Whether a relative path climbs above its start (``a/../../b``)."""
    depth = 0
    for part in path.parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            return True
    return False


def _lstat_at(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _refusal(err: OSError, relative: str) -> Exception:
    """The error a caller sees for ``err`` on ``relative``."""
    if err.errno == errno.ELOOP:
        return PathNotAllowed(f"{relative!r} is or passes through a symbolic link")
    if err.errno == errno.EXDEV:
        return PathNotAllowed(f"{relative!r} escapes its directory")
    if err.errno == errno.ENOTDIR:
        return PathNotAllowed(f"a parent of {relative!r} is not a directory (or is a link)")
    return err


class ConfinedDir:
    """A directory (a workspace) whose content is touched only through these methods."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- opening -------------------------------------------------------------------------------

    def _root_fd(self) -> int:
        return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def _open(self, parts: tuple[str, ...], flags: int, mode: int = 0o644) -> int:
        """``parts`` opened with ``flags``, no link followed anywhere (the root is trusted)."""
        root = self._root_fd()
        try:
            if not parts:
                return os.dup(root)
            fd = _openat2(root, "/".join(parts), flags, mode)
            if fd is not None:
                return fd
            parent = self._walk_dirs(root, parts[:-1], create=False)
            try:
                return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=parent)
            finally:
                os.close(parent)
        finally:
            os.close(root)

    @staticmethod
    def _walk_dirs(
        start: int, parts: tuple[str, ...], create: bool, made: list[str] | None = None
    ) -> int:
        """A new descriptor of ``parts`` below ``start``, each component a real directory (made
        when ``create``, and listed in ``made``); never follows a link."""
        fd = os.dup(start)
        try:
            for depth, part in enumerate(parts, 1):
                if create:
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                        if made is not None:
                            made.append("/".join(parts[:depth]))
                    except FileExistsError:
                        pass
                flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
                child = os.open(part, flags, dir_fd=fd)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _parent(self, parts: tuple[str, ...], create: bool) -> int:
        if not parts:
            raise PathNotAllowed("the path names the directory itself")
        root = self._root_fd()
        try:
            return self._walk_dirs(root, parts[:-1], create)
        finally:
            os.close(root)

    def open_file(self, relative: str) -> BinaryIO:
        """A regular file for reading (FIFOs, devices, sockets, directories and links refused).

        Raises FileNotFoundError when there is nothing there.
        """
        try:
            fd = self._open(split_path(relative), os.O_RDONLY | os.O_NONBLOCK)
        except OSError as err:
            raise _refusal(err, relative) from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
                raise PathNotAllowed(f"{relative!r} is {kind}")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    # --- reading -------------------------------------------------------------------------------

    def read_bytes(self, relative: str, limit: int) -> tuple[bytes, int]:
        """At most ``limit`` bytes of a regular file, and the file's size."""
        with self.open_file(relative) as file:
            size = os.fstat(file.fileno()).st_size
            return file.read(limit), size

    def read_text(self, relative: str, max_chars: int) -> str | None:
        """A file's text (None if missing), cut to ``max_chars`` with a marker saying so."""
        try:
            data, size = self.read_bytes(relative, max_chars * 4)
        except FileNotFoundError:
            return None
        text = data.decode("utf-8", errors="replace")
        if len(text) > max_chars or size > len(data):
            return text[:max_chars] + f"\n… [truncated at {max_chars} characters]"
        return text

    def lstat(self, relative: str) -> os.stat_result | None:
        """The entry itself (a link is not followed); None if there is none."""
        parts = split_path(relative)
        if not parts:
            return os.stat(self.root)
        try:
            parent = self._parent(parts, create=False)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise _refusal(err, relative) from None
        try:
            return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(parent)

    def walk(self, relative: str = ".", *, skip: frozenset[str] = frozenset()) -> Iterator[Entry]:
        """Every entry below ``relative``, depth first, sorted by name; links are listed, never
        followed; directories named in ``skip`` are listed but not entered."""
        try:
            fd = self._open(split_path(relative), os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            raise _refusal(err, relative) from None
        yield from self._walk(fd, "", skip)

    def _walk(self, fd: int, prefix: str, skip: frozenset[str]) -> Iterator[Entry]:
        try:
            with os.scandir(fd) as scan:
                entries = sorted(scan, key=lambda e: e.name)
            for entry in entries:
                path = f"{prefix}{entry.name}"
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed while walking
                is_dir, is_link = stat.S_ISDIR(info.st_mode), stat.S_ISLNK(info.st_mode)
                size = info.st_size if stat.S_ISREG(info.st_mode) else 0
                yield Entry(path, is_dir, is_link, size)
                if is_dir and entry.name not in skip:
                    try:
                        child = os.open(
                            entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd
                        )
                    except OSError:
                        continue  # replaced meanwhile
                    yield from self._walk(child, f"{path}/", skip)
        finally:
            os.close(fd)

    # --- writing -------------------------------------------------------------------------------

    def stage(self, relative: str, *, allow_git: bool = True) -> Staged:
        """A new file for ``relative``, written beside it (missing directories are made): it
        replaces the path on :meth:`Staged.commit` and vanishes, with the directories made for
        it, on :meth:`Staged.discard`."""
        parts = split_path(relative, allow_git=allow_git)
        if not parts:
            raise PathNotAllowed("the path names the directory itself")
        root = self._root_fd()
        made: list[str] = []
        try:
            parent = self._walk_dirs(root, parts[:-1], create=True, made=made)
        except OSError as err:
            self._remove_made(root, made)
            raise _refusal(err, relative) from None
        finally:
            os.close(root)
        name = f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o644, dir_fd=parent)
        except BaseException:
            os.close(parent)
            raise
        return Staged(self, relative, parts[-1], parent, name, os.fdopen(fd, "wb"), made)

    def _remove_made(self, root: int, made: list[str]) -> None:
        for path in reversed(made):  # innermost first; a directory someone filled meanwhile stays
            with contextlib.suppress(OSError):
                os.rmdir(path, dir_fd=root)

    @contextlib.contextmanager
    def replace(self, relative: str, *, allow_git: bool = True) -> Iterator[BinaryIO]:
        """Write a file: it replaces ``relative`` only when the block ends without error."""
        staged = self.stage(relative, allow_git=allow_git)
        try:
            yield staged.file
            staged.commit()
        finally:
            staged.discard()

    def write_bytes(self, relative: str, data: bytes, *, allow_git: bool = True) -> None:
        with self.replace(relative, allow_git=allow_git) as out:
            out.write(data)

    def write_text(self, relative: str, text: str) -> None:
        self.write_bytes(relative, text.encode("utf-8"))

    def make_dirs(self, relative: str) -> None:
        """Make the directory ``relative`` and its missing parents (none of them a link)."""
        parts = split_path(relative)
        root = self._root_fd()
        try:
            os.close(self._walk_dirs(root, parts, create=True))
        except OSError as err:
            raise _refusal(err, relative) from None
        finally:
            os.close(root)

    def symlink(self, relative: str, target: str) -> None:
        """Make ``relative`` a link to ``target``, which must stay inside (relative, no escape)."""
        parts = split_path(relative)
        inside = PurePosixPath(*parts[:-1]) / target
        if PurePosixPath(target).is_absolute() or _escapes(inside):
            raise PathNotAllowed(f"{relative!r} would link out of its directory ({target!r})")
        parent = self._parent(parts, create=True)
        try:
            os.symlink(target, parts[-1], dir_fd=parent)
        except OSError as err:
            raise _refusal(err, relative) from None
        finally:
            os.close(parent)

    def remove(self, relative: str) -> bool:
        """Remove a file or link (a link itself, never its target); False if there was none."""
        parts = split_path(relative)
        try:
            parent = self._parent(parts, create=False)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise _refusal(err, relative) from None
        try:
            existing = _lstat_at(parent, parts[-1])
            if existing is None:
                return False
            if stat.S_ISDIR(existing.st_mode):
                raise PathNotAllowed(f"{relative!r} is a directory")
            os.unlink(parts[-1], dir_fd=parent)
            return True
        finally:
            os.close(parent)

    def rename(self, source: str, target: str) -> None:
        """Move ``source`` to ``target`` (both below the root, parents of target made)."""
        src, dst = split_path(source), split_path(target)
        src_parent = self._parent(src, create=False)
        try:
            dst_parent = self._parent(dst, create=True)
            try:
                os.rename(src[-1], dst[-1], src_dir_fd=src_parent, dst_dir_fd=dst_parent)
            finally:
                os.close(dst_parent)
        finally:
            os.close(src_parent)


class Staged:
    """A file written beside its target, not yet in place (see :meth:`ConfinedDir.stage`)."""

    def __init__(
        self,
        owner: ConfinedDir,
        relative: str,
        name: str,
        parent: int,
        temporary: str,
        file: BinaryIO,
        made: list[str],
    ) -> None:
        self.owner, self.relative, self.name = owner, relative, name
        self.parent, self.temporary, self.file, self.made = parent, temporary, file, made
        self.done = False

    def commit(self) -> None:
        """Flush, then move into place (a link or file there is replaced, a directory refused)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        existing = _lstat_at(self.parent, self.name)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            raise PathNotAllowed(f"{self.relative!r} is a directory")
        os.rename(self.temporary, self.name, src_dir_fd=self.parent, dst_dir_fd=self.parent)
        self.made = []  # they hold the file now
        self._close(unlink=False)

    def discard(self) -> None:
        """Remove the temporary file and the directories made for it (no-op after commit)."""
        if self.done:
            return
        self._close(unlink=True)
        root = self.owner._root_fd()
        try:
            self.owner._remove_made(root, self.made)
        finally:
            os.close(root)

    def _close(self, unlink: bool) -> None:
        self.done = True
        try:
            self.file.close()
            if unlink:
                with contextlib.suppress(OSError):
                    os.unlink(self.temporary, dir_fd=self.parent)
        finally:
            os.close(self.parent)

"""Child-process hygiene shared by the codex runner and ``codexflow up``."""

from __future__ import annotations

import contextlib
import ctypes
import signal

__all__ = ["die_with_parent"]


def die_with_parent() -> None:
    """A ``preexec_fn``: if the parent is killed -9, the kernel sends the child SIGTERM instead of
    leaving it running (Linux only; elsewhere a no-op)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

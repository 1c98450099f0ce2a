"""What an error chain comes down to, in one line."""

from __future__ import annotations

__all__ = ["innermost_reason"]


def innermost_reason(err: BaseException) -> str:
    """The innermost message of an error chain (activity → application error → cause)."""
    while (cause := getattr(err, "cause", None) or err.__cause__) is not None:
        err = cause
    return str(err) or type(err).__name__

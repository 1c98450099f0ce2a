"""Logging setup: text or JSON lines on stderr, tagged with the session and Temporal ids they belong to.

``configure_logging(settings)`` is called once by ``codexflow worker`` / ``codexflow api`` (calling it
again replaces its handler, never adds a second one). In JSON mode each line is one object::

    {"ts": "2025-01-01T12:00:00.123Z", "level": "INFO", "logger": "temporalio.activity",
     "message": "...", "session_id": "ab12", "workflow_id": "session-ab12", "run_id": "...",
     "activity_type": "run_codex_task", "attempt": 1}

The ids come from what Temporal's ``workflow.logger`` / ``activity.logger`` attach to a record
(``extra={"temporal_workflow"|"temporal_activity": {...}}``), from the activity a line is logged in,
from ids bound to the current context (``bind_log_ids``, e.g. by an API request), and from an
explicit ``extra={"session_id": ...}``, in increasing order of precedence. Only these named fields
are written: arbitrary ``extra`` values are left out so that nothing secret rides along.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import unquote_plus

from temporalio import activity, workflow

from config import Settings
from core.vocabulary import session_id_of

__all__ = ["TEXT_FORMAT", "JsonFormatter", "bind_log_ids", "configure_logging", "log_ids"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ID_FIELDS = ("session_id", "workflow_id", "run_id", "activity_type", "attempt")

_OURS = "_codexflow_handler"
_bound: ContextVar[Mapping[str, Any]] = ContextVar(
    "codexflow_log_ids", default=MappingProxyType({})
)


def bind_log_ids(**ids: Any) -> None:
    """Tag every line logged from now on in the current context (a request, a task) with ``ids``."""
    _bound.set({**_bound.get(), **{k: v for k, v in ids.items() if v is not None}})


def _temporal_ids(details: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "workflow_id": details.get("workflow_id"),
        "run_id": details.get("workflow_run_id") or details.get("run_id"),
        "activity_type": details.get("activity_type"),
        "attempt": details.get("attempt"),
    }


def log_ids(record: logging.LogRecord) -> dict[str, Any]:
    """The session and Temporal ids ``record`` belongs to (only those known)."""
    ids: dict[str, Any] = {}
    details = getattr(record, "temporal_activity", None) or getattr(
        record, "temporal_workflow", None
    )
    if isinstance(details, Mapping):
        ids.update(_temporal_ids(details))
    elif activity.in_activity():  # a plain logger used inside an activity (the SDKs, ours)
        info = activity.info()
        ids.update(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            activity_type=info.activity_type,
            attempt=info.attempt,
        )
    ids.update(_bound.get())
    ids.update({k: getattr(record, k) for k in ID_FIELDS if getattr(record, k, None) is not None})
    workflow_id = ids.get("workflow_id")
    if not ids.get("session_id") and isinstance(workflow_id, str):
        ids["session_id"] = session_id_of(workflow_id)
    return {k: ids[k] for k in ID_FIELDS if ids.get(k) is not None}


_QUERY_PARAMETER = re.compile(r"([?&])([^=&\s\"'#]+)=([^&\s\"'#]*)")


def redact_query(text: str) -> str:
    """``text`` with the value of every ``token`` query parameter masked, however its name is
    spelt (``%74oken`` is decoded to ``token`` by the server, so it is masked too)."""

    def mask(match: re.Match[str]) -> str:
        separator, key, value = match.groups()
        if unquote_plus(key).strip().casefold() == "token":
            return f"{separator}{key}=***"
        return match.group(0)

    return _QUERY_PARAMETER.sub(mask, text)


class RedactTokens(logging.Filter):
    """EventSource and WebSocket clients send the API token as ``?token=``: uvicorn's access log
    would print it with the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "=" in message:
            redacted = redact_query(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (stdlib ``json``): ts, level, logger, message, ids, exc_info."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **log_ids(record),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(settings: Settings) -> None:
    """Root level and one stderr handler, text or JSON (``CODEXFLOW_LOG_FORMAT``); idempotent."""
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    for handler in list(root.handlers):
        if getattr(handler, _OURS, False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _OURS, True)
    handler.addFilter(RedactTokens())
    as_json = settings.log_format == "json"
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    # Temporal's loggers append their ids to the message too; in JSON they are fields already.
    activity.logger.activity_info_on_message = not as_json
    workflow.logger.workflow_info_on_message = not as_json

"""Structured logs: ``configure_logging`` on stderr, JSON lines tagged with session and Temporal ids."""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.testing import ActivityEnvironment

from activities.records import RecordActivities, Recorder
from config import Settings
from observability.logs import JsonFormatter, bind_log_ids, configure_logging
from workflows.types.records import SessionStart


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo configure_logging: its handler writes to this test's captured stderr."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    activity.logger.activity_info_on_message = True
    workflow.logger.workflow_info_on_message = True


def json_lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def in_activity(**info: Any) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, **info)
    return env


async def test_an_activity_line_carries_the_session_and_workflow_ids(
    settings: Settings, recorder: Recorder, restore_logging: None, capsys: pytest.CaptureFixture
) -> None:
    configure_logging(settings.model_copy(update={"log_format": "json"}))
    env = in_activity(
        workflow_id="session-s1", workflow_run_id="run-1", activity_type="record_session_start",
        attempt=2,
    )  # fmt: skip
    start = SessionStart(session_id="s1", project_id="p1",
                         workflow_id="session-s1", user_request="build it", options={})  # fmt: skip
    await env.run(RecordActivities(recorder).session_start, start)

    async def plain_logger() -> None:  # any logger, not only Temporal's, inside an activity
        logging.getLogger("codexflow.somewhere").warning("careful")

    await env.run(plain_logger)

    # Only these two loggers: a stray line (e.g. asyncio on another test's garbage) may come too.
    ours = ("temporalio.activity", "codexflow.somewhere")
    started, careful = [
        line for line in json_lines(capsys.readouterr().err) if line["logger"] in ours
    ]
    assert started == {
        "ts": started["ts"],
        "level": "INFO",
        "logger": "temporalio.activity",
        "message": "session s1 started",  # the ids are fields, not appended to the message
        "session_id": "s1",
        "workflow_id": "session-s1",
        "run_id": "run-1",
        "activity_type": "record_session_start",
        "attempt": 2,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", started["ts"])
    assert careful["logger"] == "codexflow.somewhere" and careful["level"] == "WARNING"
    assert careful["session_id"] == "s1" and careful["workflow_id"] == "session-s1"


def record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": message, **extra})


def test_workflow_ids_explicit_ids_and_errors() -> None:
    formatter = JsonFormatter()
    # What workflow.logger attaches to its records.
    details = {"workflow_id": "session-abc", "run_id": "r1", "attempt": 1, "task_queue": "q",
               "namespace": "default", "workflow_type": "PipelineWorkflow"}  # fmt: skip
    line = json.loads(formatter.format(record(temporal_workflow=details)))
    assert {k: line[k] for k in ("session_id", "workflow_id", "run_id", "attempt")} == {
        "session_id": "abc", "workflow_id": "session-abc", "run_id": "r1", "attempt": 1,
    }  # fmt: skip
    assert "task_queue" not in line and "activity_type" not in line

    # A chat workflow is no session; an explicit session id wins.
    line = json.loads(formatter.format(record(temporal_workflow={"workflow_id": "chat-p-planner"})))
    assert "session_id" not in line
    line = json.loads(formatter.format(record(session_id="explicit", temporal_workflow=details)))
    assert line["session_id"] == "explicit"

    # Only the named fields: whatever else rides in ``extra`` stays out.
    line = json.loads(formatter.format(record(api_key="sk-secret", settings=Settings())))
    assert set(line) == {"ts", "level", "logger", "message"}

    try:
        raise ValueError("boom")
    except ValueError:
        line = json.loads(formatter.format(record(exc_info=sys.exc_info())))
    assert "ValueError: boom" in line["exc_info"]


def test_ids_bound_to_a_context_tag_its_lines_only() -> None:
    formatter = JsonFormatter()

    def request() -> dict[str, Any]:
        bind_log_ids(session_id="from-request")
        return json.loads(formatter.format(record()))

    assert contextvars.copy_context().run(request)["session_id"] == "from-request"
    assert "session_id" not in json.loads(formatter.format(record()))


async def test_text_mode_is_unchanged_and_configuring_twice_adds_nothing(
    settings: Settings, restore_logging: None, capsys: pytest.CaptureFixture
) -> None:
    before = len(logging.getLogger().handlers)
    configure_logging(settings.model_copy(update={"log_format": "json"}))
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}))  # text
    assert len(logging.getLogger().handlers) == before + 1
    assert logging.getLogger().level == logging.WARNING

    async def logs() -> None:
        activity.logger.warning("codex is slow")
        logging.getLogger("codexflow.x").info("not shown at WARNING")

    await in_activity(workflow_id="session-s2").run(logs)
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING temporalio\.activity: codex is slow "
        r"\(\{.*'workflow_id': 'session-s2'.*\}\)",
        line,
    ), line


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_token_in_a_url_never_reaches_the_log(
    settings: Settings, log_format: str, restore_logging: None, capsys: pytest.CaptureFixture
) -> None:
    configure_logging(settings.model_copy(update={"log_format": log_format}))
    # A line as uvicorn's access logger writes it (`codexflow api` routes it through ours).
    access = logging.getLogger("codexflow.test.access")
    path = "/api/sessions/s1/events?after_id=3&token=s3cret-value"
    access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 200)
    err = capsys.readouterr().err
    assert "s3cret" not in err
    assert "/api/sessions/s1/events?after_id=3&token=*** HTTP/1.1" in err

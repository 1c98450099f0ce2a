"""Chaos scenarios: pipeline runs on the real local stack while one of its parts is killed.

Every part is real: the Temporal dev server (``temporal server start-dev`` on a SQLite file), the
worker (``python worker.py``) and the API (``python -m cli api``, with a token) are subprocesses;
the scripted Responses server (:class:`~devkit.brain.PipelineBrain`, every reply held back a
little) plays the four agents in this process, and the fake codex (devkit/fake_codex.py) makes the
edits. A few sessions are started through the API, then one part is killed with SIGKILL at a
moment that matters (a model call or a codex task in flight) and started again on the same
SQLite file and port, a few times, and the outcome is checked against what codexflow promises:

* runs completed: every session ends ``completed`` with outcome ``approved`` (in the database and
  in Temporal's result) and its branch holds AGENTS.md, calc.py and test_calc.py;
* model calls repeated: a request body identical to an earlier one of the same run is a paid call
  made twice. Temporal retrying a model activity that was in flight when its worker died is
  expected (``in-flight retries``: the extra attempts Temporal records for the run's model
  activities); any repeat beyond those re-asked a turn whose answer was already recorded in the
  history (``finished calls repeated``), which durability promises never happens;
* events lost or repeated: for worker kills and Temporal restarts, each session's lifecycle events
  (``session.started``/``finished``, ``stage.started``/``completed`` per stage iteration of the
  result, ``codex.started``/``finished`` per codex task for its final attempt) are in the event log
  exactly once (an earlier, killed or cancelled attempt of a codex task may have its own, once);
  for API restarts, an SSE follower per session (``ApiClient.follow``, what ``codexflow run``
  uses) gets exactly the session's logged events, in order, across the API's deaths.

Also reported: codex attempts redone (work done twice) and the longest time a run went without a
model request or an event (how long a disruption held it up).

``python bench/chaos.py`` prints the table; ``pytest -m chaos`` asserts the promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.client import Client

from activities.records import Recorder
from cli.client import ApiClient
from cli.stack import dev_server_command, reachable
from config import PROJECT_ROOT, Settings, settings_env
from core.children import die_with_parent
from core.repos import ProjectRepos, branch_of
from devkit.brain import PipelineBrain
from devkit.histories import with_children
from devkit.processes import free_port, host_settings, scratch_settings, spawn_worker
from devkit.responses_server import ScriptedResponsesServer, Stall, ToolCall, Turn
from store.db import make_engine
from store.events import Event
from store.models import CodexTask, RunSession
from store.temporal import connect
from workflows.pipeline import PipelineWorkflow
from workflows.types.pipeline import PipelineResult

__all__ = [
    "SCENARIOS",
    "ChaosReport",
    "ChaosStack",
    "api_restarts",
    "chaos_stack",
    "host_lost",
    "temporal_restarts",
    "worker_kills",
]

REQUEST = "Build a calculator module with tests."
MODEL_DELAY_S = 0.6  # per model reply: long enough to kill a part while one is in flight
# Extra fake-codex events, so that a codex task lasts (~1 s) and its output streams.
CODEX_EVENTS = "@fake events=20\n@fake delay=0.05"
RUN_DEADLINE_S = 150.0  # a run not ended this long after it started counts as not completed
MODEL_ACTIVITY = "invoke_model_activity"  # the agents plugin's model-call activity
SESSION_END = ("completed", "failed", "cancelled")


# --- the report ----------------------------------------------------------------------------------


@dataclass
class ChaosReport:
    scenario: str
    runs_started: int = 0
    runs_completed: int = 0
    model_calls: int = 0
    calls_repeated: int = 0  # identical bodies asked again, of which:
    inflight_retries: int = 0  # ... Temporal retried a call in flight when its worker died
    finished_repeated: int = 0  # ... a call whose answer was already recorded (must be 0)
    events_expected: int = 0
    events_seen: int = 0
    events_lost: int = 0
    events_repeated: int = 0
    codex_redone: int = 0  # codex attempts beyond each task's first (work done again)
    planned: int = 0  # disruptions asked for
    disruptions: int = 0  # disruptions done (fewer if the runs ended first)
    max_stall_s: float = 0.0  # longest time a run went without a model request or an event
    max_takeover_s: float = 0.0  # host lost: from the loss to a session moved elsewhere
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    HEADERS = (
        "scenario", "runs completed", "model calls", "repeated: in-flight retries",
        "repeated: finished calls", "events expected", "events seen", "events lost",
        "events repeated", "codex attempts redone", "disruptions", "longest stall",
        "longest takeover", "wall time",
    )  # fmt: skip

    @property
    def ok(self) -> bool:
        """Every disruption done, every promise kept."""
        return (
            self.disruptions == self.planned
            and self.runs_completed == self.runs_started > 0
            and self.finished_repeated == 0
            and self.events_lost == self.events_repeated == 0
        )

    def row(self) -> str:
        cells = (
            self.scenario, f"{self.runs_completed}/{self.runs_started}", self.model_calls,
            self.inflight_retries, self.finished_repeated, self.events_expected, self.events_seen,
            self.events_lost, self.events_repeated, self.codex_redone,
            f"{self.disruptions}/{self.planned}", f"{self.max_stall_s:.1f} s",
            f"{self.max_takeover_s:.1f} s" if self.max_takeover_s else "-",
            f"{self.wall_s:.0f} s",
        )  # fmt: skip
        return "| " + " | ".join(str(c) for c in cells) + " |"

    @classmethod
    def table(cls, reports: Iterable[ChaosReport]) -> str:
        lines = ["| " + " | ".join(cls.HEADERS) + " |", "|" + " --- |" * len(cls.HEADERS)]
        return "\n".join([*lines, *(r.row() for r in reports)])

    def details(self) -> str:
        """The numbers by name, then the notes (what each disruption hit, what went wrong)."""
        numbers = ", ".join(
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "notes"
        )
        return "\n".join([numbers, *(f"  - {note}" for note in self.notes)])


# --- the model ------------------------------------------------------------------------------------


class SlowBrain:
    """The PipelineBrain with every reply held back ``delay`` seconds, so that a model call is in
    flight for a while; codex prompts get ``codex_directives`` too. Records when each request
    came in (wall clock), to time kills and to tell runs apart."""

    def __init__(self, delay: float, codex_directives: str) -> None:
        self.brain = PipelineBrain(fake_codex=True)
        self.delay = delay
        self.codex_directives = codex_directives
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def reply(self, request: dict[str, Any]) -> Turn:
        with self._lock:
            self.arrivals.append((time.time(), request))
        turn = self.brain.reply(request)
        if isinstance(turn, ToolCall) and turn.name == "run_codex" and self.codex_directives:
            prompt = f"{turn.arguments['prompt']}\n{self.codex_directives}"
            turn = ToolCall("run_codex", {"prompt": prompt})
        return Stall(self.delay, turn)

    def in_flight_since(self, since: float) -> bool:
        """A request that came in after ``since`` is held right now, and not about to be answered:
        a kill now lands before its answer."""
        now = time.time()
        with self._lock:
            return any(since < t and 0.1 < now - t < self.delay - 0.15 for t, _ in self.arrivals)

    def requests_of(self, marker: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(t, r) for t, r in self.arrivals if marker in json.dumps(r)]


def body_key(request: dict[str, Any]) -> str:
    """Equal for identical request bodies (the brain's answer depends on nothing else)."""
    return json.dumps(request, sort_keys=True)


# --- the stack -----------------------------------------------------------------------------------


@dataclass
class Run:
    """A session started through the API; its user request (so every model request of the run)
    carries ``marker``."""

    session_id: str
    project_id: str
    marker: str
    started: float


class ChaosStack:
    """Temporal (SQLite file), a worker and the API as subprocesses, in one scratch directory.

    ``start(name)`` and ``kill(name)`` start and SIGKILL ``temporal``, ``worker`` or ``api``; a
    restart runs the same command: same SQLite files, same ports. Logs are in ``root/logs``.
    """

    def __init__(
        self, root: Path, settings: Settings, brain: SlowBrain, hosts: Sequence[str] = ()
    ) -> None:
        self.root = root
        self.settings = settings
        self.brain = brain
        # ``worker`` runs on the default settings; each of ``hosts`` is a worker machine of its
        # own: its identity, worktrees and codex homes (the central repositories are shared).
        self.workers = {"worker": settings} | {
            name: host_settings(settings, name, root) for name in hosts
        }
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(settings.database_url)
        self.recorder = Recorder(self.engine)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXFLOW_")}
        self.env |= settings_env(settings) | {"OPENAI_AGENTS_DISABLE_TRACING": "1"}

    def start(self, name: str) -> None:
        """Start one part and wait until it answers (the worker has no port: it just starts)."""
        log = self.logs / f"{name}.log"
        if name in self.workers:
            self.procs[name] = spawn_worker(self.workers[name], log=log)
            return
        if name == "temporal":
            cmd = dev_server_command(self.settings, self.root / "temporal.db", headless=True)
            ready = lambda: reachable(self.settings.temporal_address)  # noqa: E731
        else:
            port = self.settings.api_url.rsplit(":", 1)[1]
            cmd = [sys.executable, "-m", "cli", "api", "--port", port]
            ready = self._api_up
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # gone with us if the test itself is killed
            )
        self.procs[name] = proc
        deadline = time.monotonic() + 90
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} did not come up; see {log}")
            time.sleep(0.1)

    def _api_up(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.settings.api_url}/api/health", timeout=5).status_code == 200
        return False

    def kill(self, name: str) -> None:
        """kill -9 its process group (a worker's codex runs in groups of their own: they go by
        their parent-death signal), and reap it."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        """Stop what runs: the API first, Temporal last (SIGTERM, then SIGKILL)."""
        for name in ("api", *self.workers, "temporal"):
            if (proc := self.procs.pop(name, None)) is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    async def codex_running(self, on: str | None = None) -> bool:
        """A fake codex of this stack runs now (``on`` the worker host so named): a running task
        row whose pid is alive."""
        async with self.recorder.db() as db:
            rows = (await db.scalars(select(CodexTask).where(CodexTask.status == "running"))).all()
        root = self.workers[on].workspace_root() if on else None
        return any(
            row.process_id
            and _is_fake_codex(row.process_id)
            and (root is None or Path(row.working_directory).is_relative_to(root))
            for row in rows
        )

    # -- runs --

    def start_runs(self, count: int, tag: str, **options: Any) -> list[Run]:
        """``count`` sessions through the API, each in a project of its own, with
        these pipeline options."""
        runs = []
        with ApiClient(self.settings) as api:
            for n in range(1, count + 1):
                marker = f"[{tag} run {n}]"
                project = api.request("POST", "/api/projects/", json={"name": f"{tag}-{n}"})
                session = api.start_session(project["id"], f"{REQUEST} {marker}", options)
                runs.append(Run(session["id"], project["id"], marker, time.time()))
        return runs

    async def statuses(self, runs: Sequence[Run]) -> dict[str, tuple[str, str | None]]:
        async with self.recorder.db() as db:
            rows = await db.scalars(
                select(RunSession).where(RunSession.id.in_([r.session_id for r in runs]))
            )
            return {row.id: (row.status, row.outcome) for row in rows}

    async def all_ended(self, runs: Sequence[Run]) -> bool:
        statuses = await self.statuses(runs)
        return all(statuses.get(r.session_id, ("",))[0] in SESSION_END for r in runs)

    async def wait_until_ended(self, runs: Sequence[Run]) -> None:
        deadline = min(r.started for r in runs) + RUN_DEADLINE_S
        while time.time() < deadline:
            if await self.all_ended(runs):
                return
            await asyncio.sleep(0.5)

    async def events(self, session_id: str) -> list[Event]:
        events: list[Event] = []
        while page := await self.recorder.events.read(session_id, events[-1].id if events else 0):
            events.extend(page)
        return events


def _is_fake_codex(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, IndexError):
        return False
    return state != "Z" and b"fake_codex" in cmdline


@contextlib.asynccontextmanager
async def chaos_stack(
    root: Path, tag: str, codex_events: str = CODEX_EVENTS, hosts: Sequence[str] = ()
) -> AsyncIterator[ChaosStack]:
    """The whole stack on free ports, with settings confined to ``root`` (and a worker per name
    in ``hosts``, each a machine of its own); stopped on exit."""
    brain = SlowBrain(MODEL_DELAY_S, codex_events)
    with ScriptedResponsesServer(brain) as llm:
        settings = await scratch_settings(
            root,
            temporal_address=f"127.0.0.1:{free_port()}",
            temporal_ui_url=f"http://127.0.0.1:{free_port()}",
            task_queue=f"chaos-{tag}",
            openai_base_url=llm.base_url,
            openai_api_key=None,
            api_url=f"http://127.0.0.1:{free_port()}",
            api_token=secrets.token_urlsafe(16),
            codex_kill_grace_s=1,
        )
        stack = ChaosStack(root, settings, brain, hosts)
        try:
            for name in ("temporal", *stack.workers, "api"):
                await asyncio.to_thread(stack.start, name)
            yield stack
        finally:
            await asyncio.to_thread(stack.stop)
            await stack.engine.dispose()


# --- disruptions ---------------------------------------------------------------------------------


async def _model_call(stack: ChaosStack, since: float) -> bool:
    return stack.brain.in_flight_since(since)


async def _codex_task(stack: ChaosStack, since: float) -> bool:
    return await stack.codex_running()


TARGETS: dict[str, Callable[[ChaosStack, float], Awaitable[bool]]] = {
    "a model call": _model_call,
    "a codex task": _codex_task,
}


async def disrupt(
    stack: ChaosStack,
    runs: Sequence[Run],
    part: str,
    targets: Sequence[str],
    down_s: float,
    notes: list[str],
    progressed: Callable[[float], bool] = lambda since: True,
) -> int:
    """SIGKILL ``part`` once per target, each time while that target is in flight (and, after a
    restart, once ``progressed(restart time)``), and start it again ``down_s`` later. Returns how
    many kills were done: fewer if the runs ended (or stalled) first.

    The first kill waits until each run made two model calls or so: finished turns then exist,
    which must not be asked again."""
    done, since = 0, time.time()
    deadline = min(r.started for r in runs) + RUN_DEADLINE_S
    warm = lambda: len(stack.brain.arrivals) > 2 * len(runs)  # noqa: E731
    for target in targets:
        while not (warm() and await TARGETS[target](stack, since) and progressed(since)):
            if await stack.all_ended(runs) or time.time() > deadline:
                notes.append(f"{part} kill {done + 1} not done: {target} was not in flight again")
                return done
            await asyncio.sleep(0.05)
        killed = time.time()
        stack.kill(part)
        await asyncio.sleep(down_s)
        await asyncio.to_thread(stack.start, part)
        since = time.time()
        done += 1
        notes.append(
            f"{part} kill -9 #{done} with {target} in flight; up again {since - killed:.1f} s later"
        )
    return done


# --- judging the outcome -------------------------------------------------------------------------


async def judge(
    stack: ChaosStack, runs: Sequence[Run], report: ChaosReport, lifecycle: bool = True
) -> None:
    """Fill ``report`` with what the runs did: completion, repeated model calls, codex attempts,
    stalls and (``lifecycle``) the lifecycle events in the log."""
    statuses = await stack.statuses(runs)
    client = await connect(stack.settings)
    report.runs_started = len(runs)
    for run in runs:
        handle = client.get_workflow_handle_for(PipelineWorkflow.run, f"session-{run.session_id}")
        status = statuses.get(run.session_id, ("missing", None))
        ended = status[0] in SESSION_END
        result: PipelineResult | None = None
        if ended:
            with contextlib.suppress(Exception):
                result = await asyncio.wait_for(handle.result(), timeout=10)
        if problem := await _completion_problem(stack, run, status, result):
            report.notes.append(f"session {run.session_id}: {problem}")
        else:
            report.runs_completed += 1

        requests = stack.brain.requests_of(run.marker)
        keys = [body_key(r) for _, r in requests]
        repeated = len(keys) - len(set(keys))
        retries = await _model_retries(client, handle.id)
        finished = max(0, repeated - retries)
        report.model_calls += len(keys)
        report.calls_repeated += repeated
        report.inflight_retries += repeated - finished
        report.finished_repeated += finished
        if finished:
            report.notes.append(
                f"session {run.session_id}: {repeated} model calls asked again, Temporal retried "
                f"{retries}: {finished} finished call(s) repeated"
            )

        events = await stack.events(run.session_id)
        moments = sorted([t for t, _ in requests] + [e.created_at.timestamp() for e in events])
        end = moments[-1] if ended and moments else time.time()
        gaps = [b - a for a, b in zip([run.started, *moments], [*moments, end], strict=True)]
        report.max_stall_s = max(report.max_stall_s, *gaps)
        attempts = await _final_attempts(stack, run)
        report.codex_redone += sum(attempt - 1 for attempt in attempts.values())
        if not lifecycle:
            continue
        if result is None:
            report.notes.append(f"session {run.session_id}: no result, its events are not judged")
        else:
            _judge_lifecycle(run, events, result, attempts, report)


async def _completion_problem(
    stack: ChaosStack, run: Run, status: tuple[str, str | None], result: PipelineResult | None
) -> str | None:
    if status != ("completed", "approved"):
        return f"ended {status[0]} (outcome {status[1]}), not completed/approved"
    if result is None or result.outcome != "approved":
        return f"Temporal's result is {result.outcome if result else 'missing'}, not approved"
    # What the session delivered: its branch in the project's central repository.
    repos, branch = ProjectRepos(stack.settings), branch_of(run.session_id)
    files = {e.path for e in await repos.tree(run.project_id, branch)}
    if not {"AGENTS.md", "calc.py", "test_calc.py"} <= files:
        return f"the branch lacks AGENTS.md, calc.py or test_calc.py: {sorted(files)}"
    if "def divide" not in (await repos.read(run.project_id, branch, "calc.py")).decode():
        return "calc.py is incomplete"
    return None


async def _model_retries(client: Client, workflow_id: str) -> int:
    """Extra attempts of the run's model activities, in the session's workflow and its stages'
    (child workflows): from each history (the started event of an activity records the attempt
    that ran to its end) and, while one runs, the description."""
    handle = client.get_workflow_handle(workflow_id)
    retries = sum(
        pending.attempt - 1
        for pending in (await handle.describe()).raw_description.pending_activities
        if pending.activity_type.name == MODEL_ACTIVITY
    )
    for history in await with_children(client, workflow_id):
        model_activities: set[int] = set()
        for event in history.events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled = event.activity_task_scheduled_event_attributes
                if scheduled.activity_type.name == MODEL_ACTIVITY:
                    model_activities.add(event.event_id)
            elif event.HasField("activity_task_started_event_attributes"):
                started = event.activity_task_started_event_attributes
                if started.scheduled_event_id in model_activities:
                    retries += started.attempt - 1
    return retries


async def _final_attempts(stack: ChaosStack, run: Run) -> dict[str, int]:
    """Each codex task of the run, with the attempt it is at."""
    async with stack.recorder.db() as db:
        rows = await db.scalars(select(CodexTask).where(CodexTask.session_id == run.session_id))
        return {row.id: row.attempt for row in rows}


LIFECYCLE = (
    "session.started", "session.finished", "session.failed", "session.cancelled",
    "stage.started", "stage.completed", "stage.failed", "codex.started", "codex.finished",
)  # fmt: skip


def _lifecycle_key(event: Event) -> tuple[Any, ...]:
    if event.kind.startswith("stage."):
        return (event.kind, event.payload.get("stage"), event.payload.get("iteration"))
    if event.kind.startswith("codex."):
        return (event.kind, event.codex_task_id, event.attempt)
    return (event.kind,)


def _judge_lifecycle(
    run: Run,
    events: list[Event],
    result: PipelineResult,
    attempts: dict[str, int],
    report: ChaosReport,
) -> None:
    """Each expected lifecycle event exactly once. An earlier attempt of a codex task (killed or
    cancelled) may have its own codex.started and codex.finished: once each too."""
    expected: set[tuple[Any, ...]] = {("session.started",), ("session.finished",)}
    for stage in result.stages:
        for kind in ("stage.started", "stage.completed"):
            expected.add((kind, stage.stage.value, stage.iteration))
    if result.codex_tasks != len(attempts):
        report.notes.append(
            f"session {run.session_id}: {result.codex_tasks} codex tasks ran, "
            f"{len(attempts)} recorded"
        )
    for task, attempt in attempts.items():
        expected |= {("codex.started", task, attempt), ("codex.finished", task, attempt)}
    seen = Counter(_lifecycle_key(e) for e in events if e.kind in LIFECYCLE)
    earlier = {
        key
        for key in seen
        if key[0].startswith("codex.") and key[1] in attempts and key[2] < attempts[key[1]]
    }
    lost = expected - set(seen)
    unexpected = set(seen) - expected - earlier
    repeated = sum(n - 1 for n in seen.values()) + sum(seen[key] for key in unexpected)
    report.events_expected += len(expected)
    report.events_seen += sum(n for key, n in seen.items() if key not in earlier)
    report.events_lost += len(lost)
    report.events_repeated += repeated
    if lost or repeated:
        extra = sorted(((k, n) for k, n in seen.items() if n > 1 or k in unexpected), key=str)
        report.notes.append(
            f"session {run.session_id}: lost {sorted(lost, key=str)}, "
            f"repeated or unexpected {extra}"
        )


# --- the scenarios -------------------------------------------------------------------------------


def _alternating(count: int) -> list[str]:
    return [("a model call", "a codex task")[n % 2] for n in range(count)]


async def worker_kills(root: Path, runs: int = 3, kills: int = 3) -> ChaosReport:
    """kill -9 the worker ``kills`` times, alternately while a model call and while a codex task is
    in flight; a new worker starts half a second after each kill."""
    report = ChaosReport("worker kill -9", planned=kills)
    began = time.monotonic()
    async with chaos_stack(root, "kill") as stack:
        # Codex heartbeats every 2 s: a codex task on a killed worker is retried soon.
        started = await asyncio.to_thread(stack.start_runs, runs, "kill", codex_heartbeat_s=2)
        targets = _alternating(kills)
        report.disruptions = await disrupt(stack, started, "worker", targets, 0.5, report.notes)
        await stack.wait_until_ended(started)
        await judge(stack, started, report)
    report.wall_s = time.monotonic() - began
    return report


async def temporal_restarts(root: Path, runs: int = 3, restarts: int = 3) -> ChaosReport:
    """kill -9 the Temporal dev server ``restarts`` times (alternately while a model call and a
    codex task are in flight) and start it again on the same SQLite file and port a second later."""
    report = ChaosReport("Temporal restart", planned=restarts)
    began = time.monotonic()
    async with chaos_stack(root, "temporal") as stack:
        started = await asyncio.to_thread(stack.start_runs, runs, "temporal")
        targets = _alternating(restarts)
        report.disruptions = await disrupt(stack, started, "temporal", targets, 1.0, report.notes)
        await stack.wait_until_ended(started)
        await judge(stack, started, report)
    report.wall_s = time.monotonic() - began
    return report


class Follower(threading.Thread):
    """``ApiClient.follow`` of one session, in a thread: the events it got, in order."""

    def __init__(self, settings: Settings, session_id: str) -> None:
        super().__init__(name=f"follow-{session_id}", daemon=True)
        self.settings = settings
        self.session_id = session_id
        self.got: list[Event] = []
        self.reconnects = 0
        self.error: str | None = None

    def run(self) -> None:
        def reconnecting(reason: str) -> None:
            self.reconnects += 1

        try:
            with ApiClient(self.settings) as api:
                for event in api.follow(self.session_id, on_reconnect=reconnecting):
                    self.got.append(event)
        except Exception as err:  # reported, not raised: a thread has no one to raise to
            self.error = repr(err)


async def api_restarts(root: Path, runs: int = 3, restarts: int = 3) -> ChaosReport:
    """kill -9 the API ``restarts`` times while an SSE follower reads each session's events (each
    time while codex streams events, after the followers got events from the restarted API), and
    start it again on the same port half a second later."""
    report = ChaosReport("API restart (SSE)", planned=restarts)
    began = time.monotonic()
    # The API takes ~10 s to start (imports): longer codex tasks keep the runs going through three.
    async with chaos_stack(root, "api", "@fake events=80\n@fake delay=0.05") as stack:
        started = await asyncio.to_thread(stack.start_runs, runs, "api")
        followers = [Follower(stack.settings, run.session_id) for run in started]
        for follower in followers:
            follower.start()
        got_at: dict[float, int] = {}

        def streamed_since(since: float) -> bool:
            got = sum(len(f.got) for f in followers)
            return got > got_at.setdefault(since, got) + 5

        targets = ["a codex task"] * restarts
        report.disruptions = await disrupt(
            stack, started, "api", targets, 0.5, report.notes, streamed_since
        )
        await stack.wait_until_ended(started)
        for follower in followers:
            await asyncio.to_thread(follower.join, 30)
        await judge(stack, started, report, lifecycle=False)
        for run, follower in zip(started, followers, strict=True):
            logged = [e.id for e in await stack.events(run.session_id)]
            _judge_stream(run, logged, follower, report)
    report.wall_s = time.monotonic() - began
    return report


def _judge_stream(run: Run, logged: list[int], follower: Follower, report: ChaosReport) -> None:
    """What the follower got against the log: every id once, in order, nothing else."""
    got = [e.id for e in follower.got]
    counts = Counter(got)
    lost = [i for i in logged if i not in counts]
    repeated = sum(n - 1 for n in counts.values()) + len(set(got) - set(logged))
    out_of_order = sum(1 for a, b in zip(got, got[1:], strict=False) if b <= a)
    report.events_expected += len(logged)
    report.events_seen += len(got)
    report.events_lost += len(lost)
    report.events_repeated += max(repeated, out_of_order)
    report.notes.append(
        f"session {run.session_id}: its follower reconnected {follower.reconnects} times"
        + (f", then failed: {follower.error}" if follower.error else "")
        + (f", lost ids {lost[:10]}" if lost else "")
        + (
            f", {repeated} repeated, {out_of_order} out of order"
            if repeated or out_of_order
            else ""
        )
    )


async def host_lost(root: Path, runs: int = 3) -> ChaosReport:
    """Two worker machines; the first one a codex task runs on is lost for good (kill -9 of its
    process group) in the middle of that task. Its sessions move to the other one: each carries
    on from its last checkpoint, the half-done codex attempt redone there. (Which machine makes a
    session's worktree is Temporal's choice: either may be the one lost.)"""
    report = ChaosReport("host lost", planned=1)
    began = time.monotonic()
    async with chaos_stack(root, "host", hosts=["host-b"]) as stack:
        options = {"codex_heartbeat_s": 2, "host_lost_after_s": 5}
        started = await asyncio.to_thread(stack.start_runs, runs, "host", **options)
        deadline = min(r.started for r in started) + RUN_DEADLINE_S
        victim = None
        while victim is None:
            for name in stack.workers:
                if await stack.codex_running(on=name):
                    victim = name
                    break
            else:
                if await stack.all_ended(started) or time.time() > deadline:
                    report.notes.append("no codex task ran: nothing was lost")
                    break
                await asyncio.sleep(0.05)
        if victim is not None:
            lost = time.time()
            stack.kill(victim)
            report.disruptions = 1
            report.notes.append(
                f"host `{victim}` lost (kill -9 of its process group) mid codex task"
            )
        await stack.wait_until_ended(started)
        await judge(stack, started, report)
        if report.disruptions:
            for run in started:
                moves = [e for e in await stack.events(run.session_id) if e.kind == "session.moved"]
                for moved in moves:
                    took = moved.created_at.timestamp() - lost
                    report.max_takeover_s = max(report.max_takeover_s, took)
                    report.notes.append(
                        f"session {run.session_id} moved {moved.payload['from_host']} → "
                        f"{moved.payload['to_host']} {took:.1f} s after the loss"
                    )
    report.wall_s = time.monotonic() - began
    return report


SCENARIOS: dict[str, Callable[[Path], Awaitable[ChaosReport]]] = {
    "worker": worker_kills,
    "temporal": temporal_restarts,
    "api": api_restarts,
    "host": host_lost,
}

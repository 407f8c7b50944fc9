"""Replaying a transcript: the stored answers fed to the graph, turn by turn, recorded again.

The replay records what the graph shows through the same `Recorder` the terminal uses,
so the result is a transcript of the same shape; evals/checks.py compares the two.
The graph runs in process (InMemorySaver, offline) or behind a LangGraph API server
(evals/remote.py); both implement `start`, `resume`, `pending` and `values`.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from agent.context import Context
from agent.transcript import INTERRUPT, DecisionEvent, Expected, ProjectSource, Recorder, Transcript, load_yaml

FIXTURES_ENV = "TRAINING_PIPELINE_FIXTURES"
# The fixture projects the transcripts start from, shipped with them (copies of ../shared's).
SHIPPED_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "projects"


def fixtures_dir() -> Path:
    """The fixture projects: $TRAINING_PIPELINE_FIXTURES, or the ones shipped beside the transcripts."""
    return Path(os.environ.get(FIXTURES_ENV) or SHIPPED_FIXTURES)


def materialize(project: ProjectSource, workdir: Path) -> Path:
    """Create the starting project folder in `workdir`."""
    dest = workdir / (project.dirname or project.fixture or "project")
    if project.fixture:
        source = fixtures_dir() / project.fixture
        if not (source / "sidecar.yaml").is_file():
            raise FileNotFoundError(f"fixture project {project.fixture!r} not found in {fixtures_dir()} (set {FIXTURES_ENV})")
        shutil.copytree(source, dest)
        for p in [dest, *dest.rglob("*")]:  # the shared copy may be read-only
            p.chmod(0o755 if p.is_dir() else 0o644)
    else:
        dest.mkdir(parents=True)
        sidecar = project.sidecar if isinstance(project.sidecar, str) else yaml.safe_dump(project.sidecar, sort_keys=False)
        (dest / "sidecar.yaml").write_text(sidecar, encoding="utf-8")
        if project.project_spec is not None:
            (dest / "project-spec.md").write_text(project.project_spec, encoding="utf-8")
    for rel, text in project.files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return dest


class GraphDriver(Protocol):
    async def start(self, thread: str, project_dir: str, today: str, recorder: Recorder) -> dict | None: ...
    async def resume(self, thread: str, answer: Any, today: str, recorder: Recorder) -> dict | None: ...
    async def pending(self, thread: str) -> dict | None: ...
    async def values(self, thread: str) -> dict[str, Any]: ...


_APP: Any = None


def _app() -> Any:
    """The graph compiled once per process with an in-memory checkpointer (compiling costs ~70 ms)."""
    global _APP
    if _APP is None:
        from graph import builder

        _APP = builder.compile(checkpointer=InMemorySaver())
    return _APP


class LocalGraph:
    """The graph in this process; each instance keeps its threads apart from every other's."""

    def __init__(self, knowledge: Any, chat_model: Any = None):
        self.app = _app()
        self.knowledge = knowledge
        self.chat_model = chat_model  # None: offline, as most transcripts are
        self.namespace = uuid.uuid4().hex

    def _config(self, thread: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": f"{self.namespace}/{thread}"}, "recursion_limit": 1000}

    async def _run(self, value: Any, thread: str, today: str, recorder: Recorder) -> dict | None:
        context = Context(offline=self.chat_model is None, chat_model=self.chat_model, knowledge_client=self.knowledge, today=today)
        config = {**self._config(thread), "callbacks": recorder.callbacks} if self.chat_model is not None else self._config(thread)
        payload = None
        async for update in self.app.astream(value, config, context=context, stream_mode="updates"):
            for node, change in update.items():
                recorder.on_update(node, change)
                if node == INTERRUPT:
                    payload = change[0].value
        return payload

    async def start(self, thread: str, project_dir: str, today: str, recorder: Recorder) -> dict | None:
        return await self._run({"project_dir": project_dir}, thread, today, recorder)

    async def resume(self, thread: str, answer: Any, today: str, recorder: Recorder) -> dict | None:
        return await self._run(Command(resume=answer), thread, today, recorder)

    async def pending(self, thread: str) -> dict | None:
        snapshot = await self.app.aget_state(self._config(thread))
        return snapshot.interrupts[0].value if snapshot.interrupts else None

    async def values(self, thread: str) -> dict[str, Any]:
        return dict((await self.app.aget_state(self._config(thread))).values)


@dataclass
class Run:
    """A transcript replayed: what was stored, what happened, and where."""

    path: Path | None
    transcript: Transcript  # as stored
    actual: Transcript  # as replayed, same inputs and answers
    project_dir: Path
    start_sidecar: dict[str, Any] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # thread label -> final values
    decision_events: list[DecisionEvent] = field(default_factory=list)
    diverged: str | None = None  # why the replay could not follow the transcript's questions
    error: str | None = None  # the replay crashed
    seconds: float = 0.0
    _files: dict[str, Any] = field(default_factory=dict, repr=False)

    def read(self, rel: str) -> str | None:
        """A project file's text after the replay (None if absent); read once."""
        if rel not in self._files:
            path = self.project_dir / rel
            self._files[rel] = path.read_text(encoding="utf-8") if path.is_file() else None
        return self._files[rel]

    def sidecar(self) -> dict[str, Any]:
        if "sidecar.yaml#parsed" not in self._files:
            self._files["sidecar.yaml#parsed"] = load_yaml(self.read("sidecar.yaml") or "") or {}
        return self._files["sidecar.yaml#parsed"]

    @property
    def final_values(self) -> dict[str, Any]:
        sessions = self.actual.sessions
        return self.states.get(sessions[-1].thread, {}) if sessions else {}


async def replay(transcript: Transcript, driver: GraphDriver, workdir: Path, path: Path | None = None) -> Run:
    """Feed the transcript's answers to the graph; record what it shows and does."""
    started = time.perf_counter()
    actual = transcript.model_copy(deep=True, update={"sessions": [], "expected": Expected(), "model_responses": []})
    recorder = Recorder(actual, keep_knowledge=False)
    project_dir = materialize(transcript.project, workdir)
    run = Run(path, transcript, actual, project_dir, start_sidecar=load_yaml((project_dir / "sidecar.yaml").read_text()) or {})
    try:
        for number, stored in enumerate(transcript.sessions, 1):
            run.diverged = await _replay_session(driver, recorder, stored, number, transcript.today, str(project_dir))
            run.states[stored.thread] = await driver.values(stored.thread)
            if run.diverged:
                break
        recorder.finish(project_dir, run.final_values)
    except Exception:  # noqa: BLE001 - a crash is a failed eval, reported with its traceback
        run.error = traceback.format_exc(limit=6)
    run.decision_events = recorder.decision_events
    run.seconds = time.perf_counter() - started
    return run


async def _replay_session(driver: GraphDriver, recorder: Recorder, stored: Any, number: int, today: str, project_dir: str) -> str | None:
    """One session; returns why the graph could not be followed, or None."""
    today = stored.today or today
    recorder.begin_session(stored.thread, resumed=stored.resumed, today=today)
    if stored.resumed:
        payload = await driver.pending(stored.thread)
    else:
        payload = await driver.start(stored.thread, project_dir, today, recorder)
    for i, turn in enumerate(stored.turns, 1):
        if payload is None:
            recorder.end_session(None)
            return f"session {number}: the graph finished before turn {i} (`{turn.question_id}`)"
        if payload["question_id"] != turn.question_id:
            recorder.end_session(payload)
            return f"session {number}, turn {i}: expected `{turn.question_id}`, the graph asked `{payload['question_id']}`"
        recorder.on_answer(payload, turn.answer)
        payload = await driver.resume(stored.thread, turn.answer, today, recorder)
    recorder.end_session(payload)
    return None


def updated(run: Run) -> Transcript:
    """The stored transcript with the replay's prompts, trajectory and outcome: for `eval --update`."""
    if run.error or run.diverged:
        raise ValueError(run.error or run.diverged)
    return run.actual.model_copy(deep=True, update={"knowledge": run.transcript.knowledge})

"""Record the eval suite: scripted sessions driven through the graph, written to evals/transcripts/.

    python -m evals.make_transcripts [NAME ...]      (all scenarios when no name is given)

Each scenario is a starting project plus, per session, answers by question_id. The
session is recorded with the same Recorder as `training-pipeline chat --record`, so a
generated transcript is exactly what a user typing those answers would have produced.
Run it again after an intended change of behaviour, or use `training-pipeline eval --update`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.knowledge.catalog import CatalogQuery
from agent.knowledge.models import QueryRecord
from agent.transcript import KnowledgeSource, ProjectSource, Recorder, Transcript, save_transcript, starting_project
from evals.cli import TRANSCRIPTS
from evals.replay import LocalGraph, materialize

TODAY = "2026-04-01"
MAX_TURNS = 200

# A plausible user on the support-bot fixture; scenarios override what they are about.
HAPPY: dict[str, Any] = {
    "base_model.constraints": "One 24 GB GPU, Apache-2.0 or MIT only, English support conversations",
    "training_approach.goals": "About 40,000 resolved tickets we can turn into instruction pairs; no preference data yet",
    "training_data.description": "40,000 conversations from resolved tickets 2022-2025, reviewed by team leads, PII redacted, deduplicated against a held-out test set",
    "peft.compute": "One 24 GB GPU (RTX 4090)",
    "hyperparameters.budget": "One overnight run, about 12 GPU hours",
    "infrastructure.preference": "Our own GPU, tracked in MLflow",
}


@dataclass
class Script:
    """One session: answers by question_id (a string: always; a list: in turn, then the default)."""

    answers: dict[str, Any] = field(default_factory=dict)
    menu: list[str] = field(default_factory=list)  # menu answers in turn, then C
    stop_at: str | None = None  # leave this question unanswered (the user stops)
    thread: str = "main"
    resumed: bool = False

    def __post_init__(self) -> None:
        self._queues = {k: list(v) for k, v in self.answers.items() if isinstance(v, list)}
        self._menu = list(self.menu)

    def answer(self, payload: dict[str, Any]) -> Any:
        qid = payload["question_id"]
        if qid in self._queues:
            if self._queues[qid]:
                return self._queues[qid].pop(0)
        elif qid in self.answers:
            return self.answers[qid]
        if qid == "menu":
            return self._menu.pop(0) if self._menu else "C"
        if qid.endswith(".decision"):
            return "yes"
        raise KeyError(f"no scripted answer for {qid}: {payload['prompt'][:200]}")


@dataclass
class Scenario:
    name: str
    description: str
    project: ProjectSource
    sessions: list[Script]
    tags: list[str] = field(default_factory=list)
    failing: dict[str, int] = field(default_factory=dict)  # query_id -> times it fails: recorded knowledge
    model: bool = False  # facilitated by a model (the test suite's tool-calling fake); its replies are recorded


class FlakyKnowledge:
    """The embedded server, but the named queries fail their first N runs, as during an outage."""

    ERROR = "could not reach the knowledge server (streamable_http: https://knowledge.example/mcp): connection refused"

    def __init__(self, inner: Any, failing: dict[str, int]):
        self.inner, self.left = inner, dict(failing)

    async def run(self, queries: list[CatalogQuery]) -> list[QueryRecord]:
        records = await self.inner.run(queries)
        for i, q in enumerate(queries):
            if self.left.get(q.id, 0) > 0:
                self.left[q.id] -= 1
                records[i] = QueryRecord(query_id=q.id, section=q.stage, endpoint=q.endpoint, arguments=q.arguments,
                                         ref=q.ref, error=self.ERROR)
        return records

    async def ask(self, text: str, stage: str = "menu", limit: int = 5) -> QueryRecord:
        return await self.inner.ask(text, stage, limit)


def _fake_model() -> Any:
    """Valid replies to every prompt, built from the prompt itself: a stand-in for a real model
    at recording time only; the replay answers with what was recorded."""
    from tests.llm_fakes import ToolFakeChatModel, canned

    return ToolFakeChatModel(responder=canned)


def fixture(name: str) -> ProjectSource:
    return ProjectSource(fixture=name)


def demo_project(architecture: str) -> ProjectSource:
    """A project as `training-pipeline init-demo` makes it, inlined so the transcript stands alone."""
    from agent.demo import init_demo

    with tempfile.TemporaryDirectory() as tmp:
        root = init_demo(Path(tmp) / f"{architecture}-demo", architecture, today="2026-03-15")
        return starting_project(root)


def happy(**changes: Any) -> dict[str, Any]:
    return {**HAPPY, **changes}


async def record(scenario: Scenario, embedded: Any, workdir: Path) -> Transcript:
    knowledge = FlakyKnowledge(embedded, scenario.failing) if scenario.failing else embedded
    transcript = Transcript(
        name=scenario.name, description=scenario.description, tags=scenario.tags, project=scenario.project,
        knowledge=KnowledgeSource(source="recorded" if scenario.failing else "embedded"), today=TODAY,
        mode="model" if scenario.model else "offline",
    )
    recorder = Recorder(transcript, keep_knowledge=bool(scenario.failing))
    project_dir = materialize(scenario.project, workdir)
    graph = LocalGraph(knowledge, _fake_model() if scenario.model else None)
    values: dict[str, Any] = {}
    for script in scenario.sessions:
        recorder.begin_session(script.thread, resumed=script.resumed, today=TODAY)
        if script.resumed:
            payload = await graph.pending(script.thread)
        else:
            payload = await graph.start(script.thread, str(project_dir), TODAY, recorder)
        for _ in range(MAX_TURNS):
            if payload is None or payload["question_id"] == script.stop_at:
                break
            answer = script.answer(payload)
            recorder.on_answer(payload, answer)
            payload = await graph.resume(script.thread, answer, TODAY, recorder)
        else:
            raise RuntimeError(f"{scenario.name}: the session did not end within {MAX_TURNS} turns")
        recorder.end_session(payload)
        values = await graph.values(script.thread)
    return recorder.finish(project_dir, values)


async def generate(scenarios: list[Scenario], out: Path) -> None:
    from agent.knowledge.client import KnowledgeClient, KnowledgeConfig

    out.mkdir(parents=True, exist_ok=True)
    async with KnowledgeClient(KnowledgeConfig()) as embedded:
        for scenario in scenarios:
            with tempfile.TemporaryDirectory(prefix="tp-make-") as tmp:
                transcript = await record(scenario, embedded, Path(tmp))
            save_transcript(transcript, out / f"{scenario.name}.yaml")
            turns = sum(len(s.turns) for s in transcript.sessions)
            print(f"{scenario.name}: {turns} turns, phase {transcript.expected.phase_status}")


def main(argv: list[str] | None = None) -> int:
    from evals.scenarios import SCENARIOS

    names = list(sys.argv[1:] if argv is None else argv)
    unknown = [n for n in names if n not in {s.name for s in SCENARIOS}]
    if unknown:
        print(f"unknown scenarios: {unknown}", file=sys.stderr)
        return 2
    chosen = [s for s in SCENARIOS if not names or s.name in names]
    asyncio.run(generate(chosen, TRANSCRIPTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

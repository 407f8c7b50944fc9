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
from pathlib import Path
from typing import Any

from agent.knowledge.catalog import CatalogQuery
from agent.knowledge.models import QueryRecord
from agent.transcript import KnowledgeSource, Recorder, Transcript, save_transcript
from evals.cli import TRANSCRIPTS
from evals.replay import LocalGraph, materialize
from evals.scenarios import SCENARIOS, Scenario

TODAY = "2026-04-01"
MAX_TURNS = 200


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
    from evals.llm_fakes import ToolFakeChatModel, canned

    return ToolFakeChatModel(responder=canned)


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

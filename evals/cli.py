"""`training-pipeline eval [PATHS] [--json] [--update] [--server URL]`: replay transcripts, score, report."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.transcript import Transcript, TranscriptError, load_transcript, save_transcript
from evals.checks import CHECKS, Score
from evals.knowledge import RecordedKnowledge
from evals.recorded_model import RecordedChatModel
from evals.replay import LocalGraph, Run, replay, updated
from evals.report import Result, json_report, text_report
from evals.scorers import SCORERS

TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="training-pipeline eval", description="Replay recorded transcripts as regression evals.")
    parser.add_argument("paths", nargs="*", type=Path, help=f"transcript files or folders (default: {TRANSCRIPTS.name}/ beside this runner)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--update", action="store_true", help="rewrite each transcript's expectations from this replay")
    parser.add_argument("--server", metavar="URL", help="replay against a LangGraph API server instead of in process")
    return parser


def discover(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            found.append(p)  # a missing file is reported as a failed transcript
    return found


def score(run: Run) -> list[Score]:
    if run.error:
        return [Score("replay", "fail", [run.error])]
    checks = [check(run) for check in CHECKS]
    if run.diverged:  # after a divergence the other expectations only repeat it
        checks = [checks[0]] + [Score(c.name, "n/a", ["not compared: the replay diverged"]) for c in checks[1:]]
    return checks + [scorer(run) for scorer in SCORERS]


def _apply_update(run: Run, scores: list[Score], result: Result) -> None:
    expectations = {c.__name__ for c in CHECKS}
    changed = [s for s in scores if s.failed and s.name in expectations]
    if not changed:
        return
    if run.diverged or run.error or run.path is None:
        result.note = "not updated: the question sequence changed; record the session again"
        return
    save_transcript(updated(run), run.path)
    for s in changed:
        s.status = "updated"
    result.note = "updated"


class Evaluator:
    """Replays and scores transcripts one by one, sharing one embedded knowledge server among them."""

    def __init__(self, *, update: bool = False, server: str | None = None):
        self.update, self.server = update, server
        self._embedded: Any = None

    def driver(self, transcript: Transcript) -> Any:
        """The graph to replay `transcript` on, with the knowledge it asks for."""
        if self.server:
            from evals.remote import RemoteGraph

            return RemoteGraph(self.server)
        model = RecordedChatModel(responses=transcript.model_responses) if transcript.mode == "model" else None
        if transcript.knowledge.source == "recorded":
            return LocalGraph(RecordedKnowledge(transcript.knowledge.records), model)
        if self._embedded is None:
            from agent.knowledge.client import KnowledgeClient, KnowledgeConfig

            self._embedded = KnowledgeClient(KnowledgeConfig())  # the embedded server, never the environment's
        return LocalGraph(self._embedded, model)

    async def run(self, path: Path) -> Result:
        result = Result(path.stem, str(path))
        try:
            transcript = load_transcript(path)
        except (TranscriptError, OSError) as exc:
            result.scores = [Score("load", "fail", [str(exc)])]
            return result
        result.name = transcript.name
        if self.server and transcript.knowledge.source == "recorded":
            result.note = "skipped: recorded knowledge replays only in process"
            return result
        with tempfile.TemporaryDirectory(prefix="tp-eval-") as tmp:
            run = await replay(transcript, self.driver(transcript), Path(tmp), path)
            result.scores = score(run)  # while the project folder exists
        result.turns, result.seconds = sum(len(s.turns) for s in run.actual.sessions), run.seconds
        if self.update:
            _apply_update(run, result.scores, result)
        return result

    async def aclose(self) -> None:
        if self._embedded is not None:
            await self._embedded.aclose()
            self._embedded = None


async def evaluate(paths: list[Path], *, update: bool = False, server: str | None = None) -> list[Result]:
    evaluator = Evaluator(update=update, server=server)
    try:
        return [await evaluator.run(path) for path in paths]
    finally:
        await evaluator.aclose()


def eval_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    paths = discover(args.paths or [TRANSCRIPTS])
    if not paths:
        print("no transcripts found", file=sys.stderr)
        return 2
    started = time.perf_counter()
    results = asyncio.run(evaluate(paths, update=args.update, server=args.server))
    wall = time.perf_counter() - started
    if args.json:
        print(json.dumps(json_report(results, wall), indent=2, ensure_ascii=False))
        print(f"wall time {wall:.2f} s", file=sys.stderr)
    else:
        print(text_report(results, wall))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(eval_main())

"""The eval report: a table per transcript and per scorer, then a diff for each failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from evals.checks import Score


@dataclass
class Result:
    """One transcript's verdict."""

    name: str
    path: str
    turns: int = 0
    seconds: float = 0.0
    scores: list[Score] = field(default_factory=list)
    note: str = ""  # updated, skipped, or why it could not run

    @property
    def failed(self) -> list[Score]:
        return [s for s in self.scores if s.failed]

    @property
    def passed(self) -> bool:
        return not self.failed


def _label(r: Result) -> str:
    if not r.passed:
        return "FAIL"
    if not r.scores:
        return "skip"
    return "updated" if any(s.status == "updated" for s in r.scores) else "pass"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def text_report(results: list[Result], wall: float) -> str:
    out = ["Transcripts"]
    out += _table(
        ["transcript", "turns", "seconds", "result", "failed checks; note"],
        [[r.name, str(r.turns), f"{r.seconds:.2f}", _label(r),
          "; ".join(filter(None, [", ".join(s.name for s in r.failed), r.note]))] for r in results],
    )
    names = list(dict.fromkeys(s.name for r in results for s in r.scores))
    statuses = ["pass", "fail", "n/a"] + (["updated"] if any(s.status == "updated" for r in results for s in r.scores) else [])
    out += ["", "Scorers"]
    out += _table(
        ["scorer", *statuses],
        [[n, *(str(sum(1 for r in results for s in r.scores if s.name == n and s.status == st)) for st in statuses)]
         for n in names],
    )
    failures = [(r, s) for r in results for s in r.failed]
    if failures:
        out += ["", "Failures"]
        for r, s in failures:
            out.append(f"x {r.name} [{s.name}] ({r.path})")
            out += ["  " + d for detail in s.details for d in detail.splitlines()]
    failed = sum(1 for r in results if not r.passed)
    out += ["", f"{len(results)} transcripts, {failed} failed, {len(names)} scorers; wall time {wall:.2f} s"]
    return "\n".join(out)


def json_report(results: list[Result], wall: float) -> dict[str, Any]:
    return {
        "passed": all(r.passed for r in results),
        "wall_time_s": round(wall, 3),
        "transcripts": [
            {"name": r.name, "path": r.path, "turns": r.turns, "seconds": round(r.seconds, 3), "passed": r.passed,
             "note": r.note, "scores": [{"name": s.name, "status": s.status, "details": s.details} for s in r.scores]}
            for r in results
        ],
    }

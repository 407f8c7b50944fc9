"""Expectation checks: the replay against what the transcript recorded, each failure as a readable diff.

questions   the question sequence: ids, prompt digests (with a diff of the prompt text), errors, options
trajectory  the nodes that ran after each answer (agentevals' strict graph trajectory match)
state       phase status, hand-off, decisions (key fields) and superseded records
artifacts   outline of each artifact (Markdown headings, config values)
sidecar     the sidecar fields this phase owns or must keep
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.transcript import Session, Shown
from evals.replay import Run

Status = Literal["pass", "fail", "n/a", "updated"]  # updated: a changed expectation rewritten by --update
MAX_DIFF_LINES = 40


@dataclass
class Score:
    name: str
    status: Status
    details: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def verdict(name: str, problems: list[str]) -> Score:
    return Score(name, "fail" if problems else "pass", problems)


# --- diff helpers ------------------------------------------------------------------------


def text_diff(old: str, new: str, old_name: str = "recorded", new_name: str = "replayed") -> list[str]:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, n=1, lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... ({len(lines) - MAX_DIFF_LINES} more diff lines)"]
    return ["    " + ln for ln in lines]


def _short(value: Any, n: int = 100) -> str:
    s = repr(value)
    return s if len(s) <= n else s[: n - 1] + "…"


def value_diff(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Differences between two JSON-like values, one line per differing leaf."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out: list[str] = []
        for key in [*expected, *(k for k in actual if k not in expected)]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in actual:
                out.append(f"  {sub}: missing (expected {_short(expected[key])})")
            elif key not in expected:
                out.append(f"  {sub}: unexpected {_short(actual[key])}")
            else:
                out += value_diff(expected[key], actual[key], sub)
        return out
    if isinstance(expected, list) and isinstance(actual, list) and expected != actual:
        if all(isinstance(x, str) for x in expected + actual):
            return [f"  {path}:"] + text_diff("\n".join(expected), "\n".join(actual))
    if expected != actual:
        return [f"  {path}: expected {_short(expected)}, got {_short(actual)}"]
    return []


# --- questions -----------------------------------------------------------------------------


def _where(session: int, turn: int | None, qid: str) -> str:
    return f"session {session}, " + (f"turn {turn}" if turn else "end") + f" (`{qid}`)"


def _shown_diff(where: str, old: Shown, new: Shown) -> list[str]:
    out: list[str] = []
    if old.question_id != new.question_id:
        out.append(f"{where}: expected question `{old.question_id}`, the graph asked `{new.question_id}`:")
        return out + text_diff(old.prompt or "", new.prompt or "")
    if old.prompt_sha != new.prompt_sha:
        out.append(f"{where}: the prompt changed ({old.prompt_sha} -> {new.prompt_sha})")
        if old.prompt is None:
            out += ["    (the transcript keeps no text for the old prompt; new prompt:)"] + ["    " + ln for ln in (new.prompt or "").splitlines()[:20]]
        else:
            out += text_diff(old.prompt, new.prompt or "")
    if old.error != new.error:
        out.append(f"{where}: the error shown changed: {_short(old.error)} -> {_short(new.error)}")
    if old.options != new.options:
        out.append(f"{where}: the options changed: {old.options} -> {new.options}")
    return out


def _session_questions(number: int, old: Session, new: Session) -> list[str]:
    out: list[str] = []
    for i, (a, b) in enumerate(zip(old.turns, new.turns), 1):
        out += _shown_diff(_where(number, i, a.question_id), a, b)
    if len(new.turns) < len(old.turns):
        missing = ", ".join(f"`{t.question_id}`" for t in old.turns[len(new.turns):][:8])
        out.append(f"session {number}: the replay answered {len(new.turns)} of {len(old.turns)} turns; not reached: {missing}")
    if len(new.turns) == len(old.turns):
        if old.stopped_at is None and new.stopped_at is not None:
            out.append(f"session {number}: the transcript ends with the graph finished, but the graph now asks `{new.stopped_at.question_id}`:")
            out += ["    " + ln for ln in (new.stopped_at.prompt or "").splitlines()[:12]]
        elif old.stopped_at is not None and new.stopped_at is None:
            out.append(f"session {number}: the transcript stops at `{old.stopped_at.question_id}`, but the graph finished")
        elif old.stopped_at and new.stopped_at:
            out += _shown_diff(_where(number, None, old.stopped_at.question_id), old.stopped_at, new.stopped_at)
    return out


def questions(run: Run) -> Score:
    old, new = run.transcript.sessions, run.actual.sessions
    problems: list[str] = []
    for number, (a, b) in enumerate(zip(old, new), 1):
        problems += _session_questions(number, a, b)
    if len(new) < len(old):
        problems.append(f"{len(old) - len(new)} of {len(old)} sessions were not replayed")
    if run.diverged:  # first: where the graph left the transcript, and what it asked instead
        asked = new[-1].stopped_at if new else None
        problems[:0] = [run.diverged] + (["    " + ln for ln in (asked.prompt or "").splitlines()[:12]] if asked else [])
    return verdict("questions", problems)


# --- trajectory --------------------------------------------------------------------------


def _strict_match(expected: list[list[str]], actual: list[list[str]]) -> bool:
    """agentevals' strict graph trajectory match; the same comparison if it is not installed."""
    try:
        from agentevals.graph_trajectory.strict import graph_trajectory_strict_match
    except ImportError:  # pragma: no cover - agentevals is in the test extra
        return expected == actual
    result = graph_trajectory_strict_match(
        outputs={"inputs": [], "results": [], "steps": actual},
        reference_outputs={"inputs": [], "results": [], "steps": expected},
    )
    return bool(result["score"])


def trajectory(run: Run) -> Score:
    problems: list[str] = []
    for number, (old, new) in enumerate(zip(run.transcript.sessions, run.actual.sessions), 1):
        if _strict_match(old.trajectory, new.trajectory):
            continue
        for step, (a, b) in enumerate(zip(old.trajectory, new.trajectory)):
            if a != b:
                after = "before the first question" if step == 0 else f"after turn {step} (`{old.turns[step - 1].question_id}`)"
                problems.append(f"session {number}, {after}: the nodes that ran changed")
                problems += text_diff("\n".join(a), "\n".join(b))
                break
        else:
            problems.append(f"session {number}: {len(old.trajectory)} graph runs recorded, {len(new.trajectory)} replayed")
    return verdict("trajectory", problems)


# --- outcome -----------------------------------------------------------------------------


def state(run: Run) -> Score:
    old, new = run.transcript.expected, run.actual.expected
    problems = value_diff(
        {"phase_status": old.phase_status, "handoff": old.handoff, "superseded": old.superseded},
        {"phase_status": new.phase_status, "handoff": new.handoff, "superseded": new.superseded},
    )
    problems += value_diff(
        {s: d.model_dump() for s, d in old.decisions.items()},
        {s: d.model_dump() for s, d in new.decisions.items()},
        "decisions",
    )
    return verdict("state", problems)


def artifacts(run: Run) -> Score:
    problems: list[str] = []
    old, new = run.transcript.expected.artifacts, run.actual.expected.artifacts
    for path in [*old, *(p for p in new if p not in old)]:
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        if a is None or b is None:
            problems.append(f"{path}: " + ("missing" if b is None else "written, but the transcript expects none"))
        else:
            problems.append(f"{path}: the outline changed")
            problems += text_diff("\n".join(a), "\n".join(b)) if isinstance(a, list) and isinstance(b, list) else value_diff(a, b)
    return verdict("artifacts", problems)


def sidecar(run: Run) -> Score:
    return verdict("sidecar", value_diff(run.transcript.expected.sidecar, run.actual.expected.sidecar, "sidecar"))


CHECKS = (questions, trajectory, state, artifacts, sidecar)

"""Helpers every node uses: asking with validation, and moving between sections."""

from __future__ import annotations

from typing import Any, Callable

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.types import Command

from agent.interview import InvalidAnswer, Question, ask
from agent.sanitize import sanitize_data
from agent.state import SECTIONS, PipelineState


def ask_and_parse(
    state: PipelineState, question: Question, parse: Callable[[Any], Any]
) -> tuple[Any, dict[str, Any]]:
    """Ask `question` (with the last error for it, if any) and parse the answer.

    Returns (parsed value or None, state update). On an invalid answer the value is
    None and the update carries the error, so the caller routes back to the same node.
    The raw answer is always kept in `answers`.
    """
    question = question.model_copy(update={"error": (state.get("errors") or {}).get(question.question_id)})
    raw = ask(question)
    # A text answer is checked by the parser (control characters are refused with a message); the
    # values of a structured answer (a form sent as JSON by any client) are sanitized. The raw
    # answer is what `answers` keeps.
    given = raw if isinstance(raw, str) else sanitize_data(raw)
    try:
        value = parse(given)
    except InvalidAnswer as exc:
        return None, {
            "errors": {question.question_id: str(exc)},
            "answers": [{"question_id": question.question_id, "answer": _keepable(raw), "accepted": False, "error": str(exc)}],
        }
    return value, {
        "errors": {question.question_id: None},
        "answers": [{"question_id": question.question_id, "answer": _keepable(raw), "accepted": True, "error": None}],
        "messages": [
            AIMessage(content=f"**{question.title}**\n\n{question.prompt}", name="facilitator"),
            HumanMessage(content=_as_text(given)),
        ],
    }


def retry(node: str, update: dict[str, Any]) -> Command:
    """Ask the same question again (the validation loop is an edge back to the node)."""
    return Command(goto=node, update=update)


def _keepable(raw: Any) -> Any:
    # Keep what was typed, but never something the checkpoint cannot serialize.
    if isinstance(raw, str):
        return raw.encode("utf-8", "replace").decode("utf-8")
    if isinstance(raw, (int, float, bool, dict, list)) or raw is None:
        return raw
    return repr(raw)


def _as_text(raw: Any) -> str:
    if isinstance(raw, dict):
        return "\n".join(f"{k}: {v}" for k, v in raw.items())
    return str(_keepable(raw))


def open_sections(state: PipelineState) -> list[str]:
    decided = state.get("decisions") or {}
    return [s for s in SECTIONS if s not in decided]


def after_section(state: PipelineState, section: str) -> str:
    """The node to go to once `section` is decided: the next open section, or the artifacts."""
    if state.get("revisiting") == section:
        return "write_artifacts"
    decided = set(state.get("decisions") or {}) | {section}
    for s in SECTIONS[SECTIONS.index(section) + 1 :]:
        if s not in decided:
            return s
    for s in SECTIONS:
        if s not in decided:
            return s
    return "write_artifacts"


def first_open(state: PipelineState) -> str:
    remaining = open_sections(state)
    return remaining[0] if remaining else "write_artifacts"


def say(text: str) -> dict[str, Any]:
    """A state update that shows `text` to the user (terminal and Studio chat)."""
    return {"messages": [AIMessage(content=text, name="facilitator")]}

"""Helpers every node uses: asking with validation, and moving between sections."""

from __future__ import annotations

import uuid
from typing import Any, Callable, Literal

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.config import get_config
from langgraph.types import Command

from agent.interview import InvalidAnswer, Question, ask, describe, from_decisions, message_text, question_message
from agent.sanitize import sanitize, sanitize_data
from agent.state import SECTIONS, PipelineState

# Node names for `Command[Literal[...]]` return annotations: LangGraph draws a node's edges from
# them, so where a node may go reads in its signature (tests/test_routing.py holds these to SECTIONS).
SectionNode = Literal["base_model", "training_approach", "training_data", "peft", "hyperparameters", "infrastructure"]
# The nodes a thread can be waiting at: a restarted thread goes back there.
QuestionNode = Literal[
    "ask_architecture",
    "consult_retry",
    "base_model_ask", "base_model_decide",
    "training_approach_ask", "training_approach_decide",
    "training_data_ask", "training_data_decide",
    "peft_ask", "peft_decide",
    "hyperparameters_ask", "hyperparameters_decide",
    "infrastructure_ask", "infrastructure_decide",
    "menu",
    "revisit",
]


def ask_and_parse(
    state: PipelineState, question: Question, parse: Callable[[Any], Any]
) -> tuple[Any, dict[str, Any]]:
    """Post `question` to the chat, ask it (with the last error for it, if any), and parse the answer.

    Returns (parsed value or None, state update). None means: route back to the same node. That
    happens first to post the question as an AI message, because a node runs again from its top
    when resumed, so posting and asking cannot share a run; the next run asks. Nodes that lead to
    a question post it themselves (`post_question(..., node=...)`), which saves that run. None
    also comes with an invalid answer: the update holds the error and the question posted again
    with it, so the next run asks at once. The answer is the resume value (text, a form, or a chat
    front end's `{"decisions": [...]}`) or a chat message sent while the question waited. The raw
    answer is always kept in `answers`.
    """
    question = question.model_copy(update={"error": (state.get("errors") or {}).get(question.question_id)})
    waiting = state.get("asking") or {}
    if waiting.get("question_id") != question.question_id:
        return None, post_question(state, question)
    typed = chat_answer(state, waiting)
    raw = typed if typed is not None else ask(question)
    answer, error, value = raw, None, None
    try:
        answer = from_decisions(question, raw)  # the terminal's words for a chat front end's decision
        # A text answer is checked by the parser (control characters are refused with a message); the
        # values of a structured answer (a form sent as JSON by any client) are sanitized.
        value = parse(answer if isinstance(answer, str) else sanitize_data(answer))
    except InvalidAnswer as exc:
        error = str(exc)
    update: dict[str, Any] = {
        "asking": None,
        "errors": {question.question_id: error},
        "answers": [{"question_id": question.question_id, "answer": _keepable(answer), "accepted": error is None, "error": error}],
        # The answer in the chat, unless it was typed there.
        "messages": [HumanMessage(content=sanitize(_as_text(answer)))] if typed is None else [],
    }
    if error is not None:  # asked again, with the error, in the same run
        again = post_question(state, question.model_copy(update={"error": error}), node=waiting.get("node"))
        update = {**update, **again, "messages": [*update["messages"], *again["messages"]]}
    return value, update


def post_question(state: PipelineState, question: Question, node: str | None = None) -> dict[str, Any]:
    """The question as an AI message, and the mark that it waits for an answer (read by load_project
    when a new message restarts the thread). `node` is the node that asks it, by default the one
    running. A question asked again after an invalid answer is posted short, with the error: its
    long text is already in the chat."""
    if question.error:
        text = f"**{question.title}**\n\n{describe(question)}"
    else:
        text = f"**{question.title}**\n\n{_without_notice(question.prompt, state.get('notice'))}"
    message_id = str(uuid.uuid4())
    if node is None:
        try:
            node = (get_config().get("metadata") or {}).get("langgraph_node")
        except RuntimeError:  # called outside a graph run
            node = None
    return {
        "asking": {"question_id": question.question_id, "node": node, "message_id": message_id},
        "messages": [question_message(text, question.question_id, message_id)],
    }


def chat_answer(state: PipelineState, waiting: dict[str, Any]) -> str | None:
    """The last user message sent after the waiting question was posted, if any."""
    messages = state.get("messages") or []
    ids = [getattr(m, "id", None) for m in messages]
    if waiting.get("message_id") not in ids:
        return None
    later = [m for m in messages[ids.index(waiting["message_id"]) + 1 :] if getattr(m, "type", "") == "human"]
    return message_text(later[-1]) if later else None


def _without_notice(prompt: str, notice: str | None) -> str:
    # The menu repeats the last notice above its options; the chat has just shown it.
    if notice and prompt.startswith(notice):
        return prompt[len(notice) :].lstrip().removeprefix("---").lstrip()
    return prompt


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

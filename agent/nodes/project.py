"""Loading the project, the skip check, and the architecture question."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Command

from agent import lock, sidecar
from agent.context import Context, get_context, project_folder
from agent.interview import Option, Question, message_text, parse_choice
from agent.nodes.common import QuestionNode, SectionNode, ask_and_parse, first_open, retry, say
from agent.project import read_overview
from agent.sanitize import sanitize_data
from agent.state import ARCHITECTURES, SECTIONS, Decision, PipelineState

ARCH_OPTIONS = [
    Option(value="rag-only", label="RAG-only", description="Retrieval over a pre-trained model; Phase 2 is skipped"),
    Option(value="fine-tuning", label="Fine-tuning", description="Customize a model's behaviour by training it"),
    Option(value="hybrid", label="Hybrid", description="Retrieval plus a fine-tuned model"),
]


ASK_FOLDER = (
    "Which project shall we work on? Send the path of its folder (the one holding `sidecar.yaml`) as the "
    'server sees it, for example `/home/me/projects/support-bot`, or `{"project_dir": "..."}`.'
)


def load_project(state: PipelineState, runtime: Runtime[Context]) -> Command[Literal["check_skip", QuestionNode, "__end__"]]:
    """Read and validate the sidecar; restore decisions recorded by an earlier session.

    The folder comes from the input's `project_dir` or, for a chat, from the user's message; a chat
    that names none, or a folder that cannot be used, gets a reply asking for it. A thread that was
    waiting at a question goes back to that question: a message sent meanwhile is its answer.
    """
    ctx = get_context(runtime)
    named, chatting = requested_folder(state)
    if not (named or ctx.project_dir):
        return Command(goto=END, update=say(ASK_FOLDER))
    try:
        # The run's own folder (context) wins over one named in state or chat: see project_folder.
        project_dir = project_folder({"project_dir": named}, ctx)
        lock.check_not_held_elsewhere(project_dir)  # a run from another process than the holding session: refused
        # The files' text reaches the terminal and the artifacts: no escape sequences from them.
        raw = sanitize_data(sidecar.load_sidecar(project_dir))
    except sidecar.ProjectError as exc:
        if not chatting:
            raise  # a ValueError: the API server passes its text on to the client
        return Command(goto=END, update=say(f"{exc}\n\n{ASK_FOLDER}"))
    overview = sanitize_data(read_overview(project_dir))
    project = {
        "name": raw.get("project_name") or Path(project_dir).name,
        "created": str(raw.get("created", "")),
        "user_name": raw.get("user_name") or "",
        "architecture": raw.get("architecture"),
        **overview,
    }
    update: dict[str, Any] = {
        "project_dir": project_dir,  # absolute: the folder a resumed run continues on unless it is given another
        "project": project,
        "architecture": raw.get("architecture"),
        "phase_status": sidecar.phase_status(raw),
    }
    if not state.get("decisions"):
        restored = _decisions_from_sidecar(raw)
        if restored:
            update["decisions"] = restored
    waiting = (state.get("asking") or {}).get("node")
    return Command(goto=waiting or "check_skip", update=update)


def requested_folder(state: PipelineState) -> tuple[str | None, bool]:
    """(the folder to work on, whether a chat is still looking for it: then a problem is replied to).

    A thread whose project is loaded keeps its folder; before that, the latest user message names
    it if it names one (so a wrong folder can be corrected in the chat), else `project_dir`."""
    if state.get("project") and state.get("project_dir"):
        return state["project_dir"], False
    said = [m for m in state.get("messages") or [] if getattr(m, "type", "") == "human"]
    named = folder_named(message_text(said[-1])) if said else None
    return named or state.get("project_dir") or None, bool(said)


_QUOTED = re.compile(r"[`'\"]([^`'\"\n]+)[`'\"]")


def folder_named(text: str) -> str | None:
    """The folder a chat message names: JSON (`{"project_dir": ...}` or a string), a quoted path,
    or a word that looks like a path (has a slash, starts with ~ or .) or is an existing folder."""
    text = text.strip()
    if text.startswith(("{", '"')):
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            data = data.get("project_dir") or data.get("project")
        if isinstance(data, str) and data.strip():
            return str(Path(data.strip()).expanduser())
    whole = [text] if text.startswith(("/", "~", ".")) and "\n" not in text else []  # a path with spaces
    candidates = whole + _QUOTED.findall(text) + text.split()
    for word in candidates:
        word = word.strip().strip("`'\"").rstrip(".,;:!?)")
        if word and ("/" in word or "\\" in word or word.startswith("~") or Path(word).is_dir()):
            return str(Path(word).expanduser())
    return None


def _decisions_from_sidecar(raw: dict) -> dict[str, dict]:
    """tp entries that carry our structured part become state decisions again."""
    out: dict[str, dict] = {}
    for entry in sidecar.tp_entries(raw):
        stored = entry.get("training_pipeline")
        if not isinstance(stored, dict) or stored.get("section") not in SECTIONS:
            continue
        try:
            decision = Decision.model_validate(stored)
        except ValueError:
            continue  # an entry we cannot read is asked again rather than trusted
        out[decision.section] = decision.model_dump(mode="json")
    return out


def check_skip(
    state: PipelineState,
) -> Command[Literal["ask_architecture", "write_skip_record", "welcome", "menu", SectionNode, "write_artifacts"]]:
    arch = state.get("architecture")
    status = state.get("phase_status", "pending")
    if arch not in ARCHITECTURES:
        return Command(goto="ask_architecture")
    if status in ("complete", "skipped"):
        verb = "completed" if status == "complete" else "skipped (RAG-only architecture)"
        text = (
            f"Phase 2 was already {verb} for **{state['project']['name']}**. Nothing will be redone: "
            + ("revisit a decision with A, " if status == "complete" else "")
            + "view progress with P, or continue to Phase 3 with C."
        )
        return Command(goto="menu", update={"notice": text, **say(text)})
    if arch == "rag-only":
        return Command(goto="write_skip_record")
    if state.get("insights") is not None:  # a restarted thread: the welcome and the knowledge stage were given
        return Command(goto=first_open(state))
    return Command(goto="welcome")


def ask_architecture(state: PipelineState, runtime: Runtime[Context]) -> Command[Literal["ask_architecture", "check_skip"]]:
    """The sidecar has no architecture: ask, never guess."""
    question = Question(
        question_id="architecture",
        section="architecture",
        kind="choice",
        title="Project architecture",
        prompt=(
            f"The sidecar of **{state['project']['name']}** does not say which architecture Phase 0 chose, and this "
            "phase depends on it (RAG-only projects skip training). Which architecture does the project use?"
        ),
        options=ARCH_OPTIONS,
    )
    value, update = ask_and_parse(state, question, lambda raw: parse_choice(raw, ARCH_OPTIONS))
    if value is None:
        return retry("ask_architecture", update)
    try:
        sidecar.set_architecture(project_folder(state, get_context(runtime)), value)
    except sidecar.ProjectError as exc:  # e.g. a full disk: say what to fix, ask again with the answer kept
        answers = [{**a, "accepted": False, "error": str(exc)} for a in update.get("answers", [])]
        return retry("ask_architecture", {**update, "answers": answers, "errors": {question.question_id: str(exc)}})
    project = {**state["project"], "architecture": value}
    return Command(goto="check_skip", update={**update, "architecture": value, "project": project})

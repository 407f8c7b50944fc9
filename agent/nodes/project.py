"""Loading the project, the skip check, and the architecture question."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from langgraph.types import Command

from agent import sidecar
from agent.interview import Option, Question, parse_choice
from agent.nodes.common import ask_and_parse, retry, say
from agent.project import read_overview
from agent.sanitize import sanitize_data
from agent.state import ARCHITECTURES, SECTIONS, Decision, PipelineState

ARCH_OPTIONS = [
    Option(value="rag-only", label="RAG-only", description="Retrieval over a pre-trained model; Phase 2 is skipped"),
    Option(value="fine-tuning", label="Fine-tuning", description="Customize a model's behaviour by training it"),
    Option(value="hybrid", label="Hybrid", description="Retrieval plus a fine-tuned model"),
]


def load_project(state: PipelineState) -> dict[str, Any]:
    """Read and validate the sidecar; restore decisions recorded by an earlier session."""
    project_dir = state.get("project_dir")
    if not project_dir:
        raise sidecar.ProjectError("No project folder given: start the run with {\"project_dir\": \"<folder with sidecar.yaml>\"}.")
    # The files' text reaches the terminal and the artifacts: no escape sequences from them.
    raw = sanitize_data(sidecar.load_sidecar(project_dir))
    overview = sanitize_data(read_overview(project_dir))
    project = {
        "name": raw.get("project_name") or Path(project_dir).name,
        "created": str(raw.get("created", "")),
        "user_name": raw.get("user_name") or "",
        "architecture": raw.get("architecture"),
        **overview,
    }
    update: dict[str, Any] = {
        "project": project,
        "architecture": raw.get("architecture"),
        "phase_status": sidecar.phase_status(raw),
    }
    if not state.get("decisions"):
        restored = _decisions_from_sidecar(raw)
        if restored:
            update["decisions"] = restored
    return update


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


def check_skip(state: PipelineState) -> Command[Literal["ask_architecture", "write_skip_record", "welcome", "menu"]]:
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
    return Command(goto="welcome")


def ask_architecture(state: PipelineState) -> Command[Literal["ask_architecture", "check_skip"]]:
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
    sidecar.set_architecture(state["project_dir"], value)
    project = {**state["project"], "architecture": value}
    return Command(goto="check_skip", update={**update, "architecture": value, "project": project})

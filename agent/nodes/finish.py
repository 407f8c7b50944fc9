"""Writing the artifacts, the skip record, the sidecar check and the hand-off to Phase 3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langgraph.runtime import Runtime

from agent import sidecar
from agent.context import Context, get_context, project_folder
from agent.decisions import sidecar_entry, write_phase
from agent.nodes.common import say
from agent.state import DECISION_IDS, PipelineState

NEXT_STEP = {
    "step": 5,
    "step_id": "step-05-inference-pipeline",
    "step_file": "steps/step-05-inference-pipeline.md",
    "phase": 3,
    "title": "Phase 3: Inference Pipeline",
}

PHASE_PAGES = [
    "phase-2-training/spec.md",
    "phase-2-training/templates/training-config.template.yaml",
    "decision-log.md",
    "project-spec.md",
]


def write_artifacts(state: PipelineState, runtime: Runtime[Context] | None = None) -> dict[str, Any]:
    written = write_phase(state, project_folder(state, get_context(runtime)))
    text = "Phase 2 artifacts written:\n" + "\n".join(f"- `{p}`" for p in written)
    return {"artifacts": written, "phase_status": "complete", "revisiting": None, **say(text)}


def write_skip_record(state: PipelineState, runtime: Runtime[Context]) -> dict[str, Any]:
    from agent.artifacts.writer import write_skip_artifacts  # off the chat's start-up, like write_phase's

    root = project_folder(state, get_context(runtime))
    written = write_skip_artifacts(root)
    sidecar.mark_phase_skipped(root)
    text = (
        "**Phase 2: Training Pipeline - SKIPPED.** The project uses a RAG-only architecture, so no fine-tuning is "
        "needed. The skip record is in `phase-2-training/spec.md`; proceeding to Phase 3 (Inference Pipeline)."
    )
    return {"artifacts": written, "phase_status": "skipped", **say(text)}


def verify_sidecar(state: PipelineState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Before leaving the step: the sidecar must say what the seed's section 11 says, and the files must exist."""
    root = Path(project_folder(state, get_context(runtime)))
    raw = sidecar.load_sidecar(root)
    problems: list[str] = []
    status = sidecar.phase_status(raw)
    if state.get("phase_status") == "skipped":
        if status != "skipped":
            sidecar.mark_phase_skipped(root)
            problems.append("phase status was not 'skipped'")
    else:
        recorded = {e["id"]: e for e in sidecar.tp_entries(raw)}
        for section, decision in (state.get("decisions") or {}).items():
            entry = recorded.get(DECISION_IDS[section])
            if entry is None or entry.get("choice") != decision["choice"]:
                sidecar.upsert_decision(root, sidecar_entry(decision))
                problems.append(f"{DECISION_IDS[section]} was missing or stale")
        missing_pages = [p for p in PHASE_PAGES if not (root / p).is_file()]
        if missing_pages or status != "complete" or 4 not in (raw.get("stepsCompleted") or []):
            write_artifacts(state, runtime)
            problems.append("artifacts or completion were missing")
    text = "Sidecar verified" + (f" and repaired ({'; '.join(problems)})." if problems else ": every decision and the phase status are recorded.")
    return say(text)


def handoff(state: PipelineState) -> dict[str, Any]:
    text = (
        f"**{NEXT_STEP['title']}** is next: load `{NEXT_STEP['step_file']}` to continue the workflow. "
        "Training pipeline design is recorded in the project folder."
    )
    return {"handoff": dict(NEXT_STEP), **say(text)}


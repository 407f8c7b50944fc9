"""What the phase's decisions become: their fields by section, their sidecar entries, the written phase."""

from __future__ import annotations

from typing import Any

from agent import sidecar
from agent.planning.constraints import from_decisions
from agent.planning.pitfalls import check_pitfalls
from agent.planning.plan import try_plan
from agent.state import PipelineState


def fields_by_section(state: PipelineState) -> dict[str, dict]:
    return {s: d["fields"] for s, d in (state.get("decisions") or {}).items()}


def sidecar_entry(decision: dict[str, Any]) -> dict[str, Any]:
    """The sidecar's decisions entry for a TP decision; our structured record under `training_pipeline`."""
    return {
        "id": decision["id"],
        "choice": decision["choice"],
        "rationale": decision["rationale"],
        "knowledge_ref": decision["knowledge_refs"][0] if decision.get("knowledge_refs") else "",
        "training_pipeline": decision,
    }


def write_phase(state: PipelineState, root: str) -> list[str]:
    """Seed sections 9-11 in the folder `root`: spec, config template, decision log, project spec,
    sidecar; the paths written."""
    decisions = state.get("decisions") or {}
    fields = fields_by_section(state)
    pitfalls = [p.model_dump(mode="json") for p in check_pitfalls(decisions, state.get("project"))]
    gpu = from_decisions(decisions, state.get("project")).gpu_spec
    estimate = try_plan(fields, gpu=gpu) if {"base_model", "peft"} <= set(fields) else None
    from agent.artifacts.writer import write_phase_artifacts  # not needed before the first answers: off the chat's start-up

    written = write_phase_artifacts(
        root,
        decisions,
        state.get("superseded") or [],
        state.get("knowledge") or [],
        state.get("project") or {},
        pitfalls=pitfalls,
        estimate_summary=estimate.summary if estimate is not None else None,
    )
    sidecar.mark_phase_complete(root)
    return written

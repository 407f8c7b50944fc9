"""Shared reading of decision dumps and display labels for the renderers."""

from __future__ import annotations

from typing import Any

from agent.state import DECISION_IDS

NOT_DECIDED = "*Not decided yet*"

APPROACH_LABELS = {"sft": "SFT", "dpo": "DPO", "combined": "Combined (SFT, then DPO)"}
METHOD_LABELS = {"full": "Full fine-tuning", "lora": "LoRA", "qlora": "QLoRA"}
QUALITY_LABELS = {
    "diversity": "Diversity",
    "quality": "Quality",
    "consistency": "Consistency",
    "no_contamination": "No contamination",
    "no_pii": "No PII",
}


def quality_list(checks: list[str] | None) -> str:
    return ", ".join(QUALITY_LABELS.get(c, str(c)) for c in checks or []) or "none listed"


def fields_of(decisions: dict[str, dict[str, Any]] | None, section: str) -> dict[str, Any] | None:
    """The structured part of a section's current decision, or None while undecided."""
    decision = (decisions or {}).get(section)
    if not decision:
        return None
    return decision.get("fields") or {}


def approach_of(decisions: dict[str, dict[str, Any]] | None) -> str | None:
    f = fields_of(decisions, "training_approach")
    return f.get("approach") if f else None


def uses_sft(approach: str | None) -> bool:
    return approach in ("sft", "combined")


def uses_dpo(approach: str | None) -> bool:
    return approach in ("dpo", "combined")


def decision_heading_id(decision: dict[str, Any]) -> str:
    """"tp-001" -> "TP-001", as the decision log's headings spell ids."""
    return str(decision.get("id") or DECISION_IDS.get(decision.get("section", ""), "tp-000")).upper()


def fmt_num(value: int | float | None) -> str:
    """Numbers for prose: shortest exact form, whole floats without ".0"."""
    if value is None:
        return "not set"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return str(value)


def fmt_count(value: int | None) -> str:
    return "not set" if value is None else f"{value:,}"


def fmt_params(params_b: float | None) -> str:
    if params_b is None:
        return "not set"
    return f"{params_b:g}B" if params_b >= 1 else f"{params_b * 1000:g}M"

"""project-spec.md: the one "## Phase 2: Training Pipeline" section of the growing spec."""

from __future__ import annotations

import re
from typing import Any

from agent.artifacts.common import (
    APPROACH_LABELS,
    METHOD_LABELS,
    NOT_DECIDED,
    fields_of,
    fmt_count,
    fmt_num,
    fmt_params,
    uses_dpo,
    uses_sft,
)
from agent.artifacts.markdown import heading_spans, inline, splice, split_lines
from agent.artifacts.skip_record import render_skip_project_spec_section

SECTION_HEADING = "## Phase 2: Training Pipeline"
_PHASE = re.compile(r"^## Phase (\d+)\b")


def _phase(heading: str) -> int | None:
    m = _PHASE.match(heading)
    return int(m.group(1)) if m else None


def _summary_lines(decisions: dict[str, dict[str, Any]]) -> list[str]:
    base = fields_of(decisions, "base_model")
    approach = fields_of(decisions, "training_approach")
    data = fields_of(decisions, "training_data")
    peft = fields_of(decisions, "peft")
    hp = fields_of(decisions, "hyperparameters")
    infra = fields_of(decisions, "infrastructure")

    def line(label: str, fields: dict[str, Any] | None, text) -> str:
        return f"**{label}:** {NOT_DECIDED if fields is None else text(fields)}"

    def data_text(f: dict[str, Any]) -> str:
        kind = approach.get("approach") if approach else None
        counts = []
        if uses_sft(kind) or f.get("sft_examples") is not None:
            counts.append(f"{fmt_count(f.get('sft_examples'))} instruction-response pairs")
        if uses_dpo(kind) or f.get("dpo_pairs") is not None:
            counts.append(f"{fmt_count(f.get('dpo_pairs'))} preference pairs")
        return "; ".join(counts + [inline(f.get("source", ""))])

    def peft_text(f: dict[str, Any]) -> str:
        label = METHOD_LABELS.get(f.get("method"), inline(f.get("method", "")))
        if f.get("method") == "full":
            return label
        modules = ", ".join(inline(m) for m in f.get("target_modules") or [])
        return f"{label} r={fmt_num(f.get('r'))}, alpha={fmt_num(f.get('alpha'))} on {modules}"

    def hp_text(f: dict[str, Any]) -> str:
        return (
            f"learning rate {fmt_num(f.get('learning_rate'))}, batch size {fmt_num(f.get('batch_size'))}"
            f" x {fmt_num(f.get('gradient_accumulation_steps'))} accumulation steps,"
            f" {fmt_num(f.get('num_epochs'))} epochs, max length {fmt_num(f.get('max_length'))}"
        )

    def infra_text(f: dict[str, Any]) -> str:
        where = f"{inline(f.get('platform', ''))} ({inline(f.get('instance_type', ''))})"
        return f"{where}, tracking with {inline(f.get('tracking_tool', ''))}"

    def base_text(f: dict[str, Any]) -> str:
        return f"{inline(f.get('name', ''))} ({fmt_params(f.get('params_b'))}, {inline(f.get('license', ''))})"

    def approach_text(f: dict[str, Any]) -> str:
        return APPROACH_LABELS.get(f.get("approach"), inline(f.get("approach", "")))

    return [
        line("Base model", base, base_text),
        line("Training approach", approach, approach_text),
        line("Training data", data, data_text),
        line("PEFT", peft, peft_text),
        line("Hyperparameters", hp, hp_text),
        line("Infrastructure", infra, infra_text),
    ]


def render_project_spec_section(decisions: dict[str, dict[str, Any]]) -> str:
    return "\n".join(
        [
            SECTION_HEADING,
            "",
            *_summary_lines(decisions),
            "",
            "Decisions TP-001 to TP-006 are recorded in `decision-log.md`.",
            "See `phase-2-training/spec.md` and `phase-2-training/templates/training-config.template.yaml`.",
            "",
            "---",
            "",
        ]
    )


def update_project_spec(
    existing_text: str,
    decisions: dict[str, dict[str, Any]],
    project: dict[str, Any],
    skipped: bool = False,
) -> str:
    """Insert or replace the Phase 2 section: after Phase 0/1, before any later phase.

    `project` is accepted for symmetry with the other renderers; the section needs
    nothing from it today.
    """
    section = render_skip_project_spec_section() if skipped else render_project_spec_section(decisions)
    lines = split_lines(existing_text)
    drop: set[int] = set()
    for span in heading_spans(lines):
        if _phase(span.heading) == 2:
            drop.update(range(span.start, span.end))
    lines = [line for i, line in enumerate(lines) if i not in drop]

    spans = heading_spans(lines)
    earlier = [s for s in spans if _phase(s.heading) in (0, 1)]
    later = [s for s in spans if (_phase(s.heading) or 0) > 2]
    if earlier:
        index = earlier[-1].end
    elif later:
        index = later[0].start
    else:
        index = len(lines)
    return splice(lines, index, section)

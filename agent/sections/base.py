"""What a decision section is, declaratively.

A section is data plus one pure function: the seed's tables and question, the
form of its decision, and `recommend(inputs) -> Proposal`. The graph's nodes
(agent/nodes/sections.py) do the asking, fetching and recording for every
section the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, Field

from agent.interview import FormField, Option
from agent.planning.constraints import Constraints, gpu_text, source_name
from agent.planning.fit import HEADROOM, Fitting, figure, gpu_hours
from agent.planning.gpu import GpuSpec


class SectionInputs(BaseModel):
    """Everything a recommendation may use; nothing else (no I/O, no clock)."""

    context: str = ""  # the user's answer to the section's question
    earlier: dict[str, str] = Field(default_factory=dict)  # answers to the other sections' questions
    project: dict[str, Any] = Field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = Field(default_factory=dict)  # section -> confirmed fields
    knowledge: list[dict[str, Any]] = Field(default_factory=list)  # query records for this section
    choice: str | None = None  # an alternative the user picked among the options
    edits: dict[str, Any] = Field(default_factory=dict)  # field values the user typed


class Proposal(BaseModel):
    """A recommended decision, shown with its reasoning before the user confirms it."""

    choice_value: str
    choice: str  # the human label of what is decided
    fields: dict[str, Any]
    reasoning: list[str]  # shown first: why, step by step
    rationale: str  # one paragraph for the decision record
    options: list[Option]
    options_considered: list[str]
    consequences: list[str]
    knowledge_items: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)  # warnings specific to this section's data


@dataclass(frozen=True)
class SectionSpec:
    name: str
    seed_section: int
    title: str
    ask_id: str
    ask_title: str
    ask_text: str  # the seed's "Ask:" question
    intro: str  # the seed's criteria and option tables (Markdown)
    fields: list[FormField]
    recommend: Callable[[SectionInputs], Proposal]
    ask_placeholder: str = ""
    examples: list[str] = field(default_factory=list)

    @property
    def decision_id(self) -> str:
        return f"{self.name}.decision"


def knowledge_lines(records: list[dict[str, Any]], limit: int = 3) -> tuple[list[str], list[str]]:
    """Top items of the records as cited lines, and their ids."""
    lines: list[str] = []
    ids: list[str] = []
    for rec in records:
        for item in rec.get("items", []):
            if item["id"] in ids:
                continue
            ids.append(item["id"])
            source = item.get("source_title") or "unknown source"
            lines.append(f"{item['title']} ({source}) [{item['id'][:8]}]")
            if len(lines) >= limit:
                return lines, ids
    return lines, ids


KNOWLEDGE_PREFIX = "Knowledge consulted: "


def rationale_from(reasoning: list[str], n: int = 2, skip: int = 0) -> str:
    """The decision record's rationale: `n` reasons from `skip` on, never the citation line."""
    reasons = [r for r in reasoning if not r.startswith(KNOWLEDGE_PREFIX)]
    return " ".join(reasons[skip : skip + n]) or " ".join(reasons[:n])


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table; cell text has pipes and newlines escaped."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def understood_notes(stated: Constraints, section: str) -> list[str]:
    """What the answer to this section's question was read as, and what it replaced: a misreading shows here."""
    read = stated.understood(section)
    if read:
        notes = ["Understood from your answer: " + "; ".join(read) + ". If that is wrong, answer with the correct figures "
                 "(for example `two RTX 3090` or `about 10 GPU hours`)."]
    else:
        notes = ["Nothing about GPUs, budget, data volume or lengths was read from your answer."]
    return notes + [f"{r.text}: what you said last wins." for r in stated.overridden if r.source == section]


def plan_check_lines(fitting: Fitting, gpu: GpuSpec | None, stated: Constraints) -> list[str]:
    """The plan's own figures against the stated GPUs and budget, with the changes made to fit."""
    p = fitting.plan
    if p is None:
        return ["Plan check: the decisions so far are not enough to estimate memory and time."]
    lines = []
    if gpu is not None and stated.gpu is not None:
        verdict = "fits" if fitting.fits else "does NOT fit"
        lines.append(f"Plan check: peak {p.memory.total_gb:.1f} GB {verdict} {gpu_text(gpu)} with {1 - HEADROOM:.0%} headroom "
                     f"(GPUs from {source_name(stated.gpu.source)}).")
    else:
        lines.append(f"Plan check: peak {p.memory.total_gb:.1f} GB; no GPU stated, so it is sized at the infrastructure decision.")
    if p.hours is not None:
        line = f"Time: about {gpu_hours(p):.1f} GPU hours ({p.gpu_count}x {p.gpu_card})"
        if stated.budget_hours is not None:
            ok = gpu_hours(p) <= float(stated.budget_hours.value) * 1.0001
            line += f", {'within' if ok else 'OVER'} the {float(stated.budget_hours.value):g} GPU hours from {source_name(stated.budget_hours.source)}"
        lines.append(line + ".")
    if fitting.steps:
        lines.append("Changed to fit: " + "; ".join(fitting.steps) + f" ({fitting.before} before, {figure(p)} after).")
    if fitting.tradeoffs:
        lines.append("Nothing within this section's values fits everything you stated; a constraint has to give (see the notes).")
    return lines

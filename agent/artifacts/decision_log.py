"""decision-log.md: one ADR entry per TP decision, in the format of the earlier phases.

`update_decision_log` owns only the `## TP-nnn` entries, and of those only the lines
it renders. An entry whose rendered lines are unchanged keeps its bytes, notes people
added inside it included; a changed one is replaced where it stands, and the notes
people added to it stay after the replacement. The first TP block goes after the last
Phase 0/1 entry. The rest of the file keeps its bytes, and a second run gives the same
output.
"""

from __future__ import annotations

import re
from typing import Any

from agent.artifacts.common import decision_heading_id
from agent.artifacts.markdown import code, heading_spans, inline, splice, split_lines
from agent.state import SECTION_TITLES, SECTIONS

PLACEHOLDER = "*Decisions will be added as the project progresses.*"
PHASE = "2 - Training Pipeline"

_TP_ENTRY = re.compile(r"^## TP-\d+\b")
# Entries of the phases before this one: the TP block goes after the last of them.
_EARLIER_ENTRY = re.compile(r"^## (ARCH|FP)-\d+\b")
_DECISIONS_HEADING = re.compile(r"^## Decisions\s*$")


def render_decision_entry(decision: dict[str, Any]) -> str:
    """One ADR entry; no trailing blank line."""
    title = decision.get("title") or SECTION_TITLES.get(decision.get("section", ""), "Decision")
    lines = [f"## {decision_heading_id(decision)}: {inline(title)}"]
    if decision.get("superseded_on"):
        lines.append(f"**Status:** Superseded on {inline(decision['superseded_on'])} by the entry below")
    lines += [
        f"**Decision:** {inline(decision.get('choice', ''))}",
        f"**Date:** {inline(decision.get('date', ''))}",
        f"**Phase:** {PHASE}",
    ]
    if decision.get("context"):
        lines.append(f"**Context:** {inline(decision['context'])}")
    options = decision.get("options_considered") or []
    if options:
        lines.append("**Options Evaluated:** " + " ".join(f"{i}. {inline(o)}" for i, o in enumerate(options, 1)))
    lines.append(f"**Choice Rationale:** {inline(decision.get('rationale', ''))}")
    refs = decision.get("knowledge_refs") or []
    lines.append("**Knowledge Reference:** " + (", ".join(code(r) for r in refs) if refs else "none consulted"))
    items = decision.get("knowledge_items") or []
    if items:
        lines.append("**Knowledge Items:** " + ", ".join(code(i) for i in items))
    warnings = decision.get("warnings_acknowledged") or []
    if warnings:
        lines.append("**Warnings Acknowledged:** " + "; ".join(inline(w) for w in warnings))
    consequences = decision.get("consequences") or []
    if consequences:
        lines.append("**Consequences:**")
        lines += [f"- {inline(c)}" for c in consequences]
    return "\n".join(lines)


def _ordered_entries(decisions: dict[str, dict[str, Any]], superseded: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Section order; within a section the superseded records oldest first, then the current one."""
    out: list[dict[str, Any]] = []
    for section in SECTIONS:
        # Stable sort: records replaced on the same day keep the order they were given in.
        old = sorted(
            (d for d in superseded if d.get("section") == section),
            key=lambda d: (str(d.get("superseded_on") or ""), str(d.get("date") or "")),
        )
        out += old
        if decisions.get(section):
            out.append(decisions[section])
    return out


def _without_tp_entries(lines: list[str]) -> list[str]:
    drop: set[int] = set()
    for span in heading_spans(lines, rule_ends_section=True):
        if _TP_ENTRY.match(span.heading):
            drop.update(range(span.start, span.end))
    return [line for i, line in enumerate(lines) if i not in drop]


def _without_placeholder(lines: list[str]) -> list[str]:
    out: list[str] = []
    skip_blank = False
    for line in lines:
        if line.strip() == PLACEHOLDER:
            # Drop the blank line after it too when one already precedes it.
            skip_blank = bool(out) and not out[-1].strip()
            continue
        if skip_blank and not line.strip():
            skip_blank = False
            continue
        skip_blank = False
        out.append(line)
    return out


def update_decision_log(
    existing_text: str,
    decisions: dict[str, dict[str, Any]],
    superseded: list[dict[str, Any]],
) -> str:
    rendered = [render_decision_entry(d) for d in _ordered_entries(decisions, superseded)]
    lines = split_lines(existing_text)
    spans = [s for s in heading_spans(lines, rule_ends_section=True) if _TP_ENTRY.match(s.heading)]
    if spans:
        return _update_in_place(lines, spans, rendered)
    if not rendered:
        return existing_text
    lines = _without_placeholder(lines)
    block = "\n\n".join(rendered) + "\n"

    spans = heading_spans(lines, rule_ends_section=True)
    earlier = [s for s in spans if _EARLIER_ENTRY.match(s.heading)]
    if earlier:
        return splice(lines, earlier[-1].end, block)
    decisions_heading = [s for s in spans if _DECISIONS_HEADING.match(s.heading.rstrip("\r"))]
    if decisions_heading:
        return splice(lines, decisions_heading[0].end, block)
    return splice(lines, len(lines), "## Decisions\n\n" + block)


def _ours(line: str) -> bool:
    """A line of the shape the renderer writes (heading, `**Field:**`, consequence item)."""
    text = line.rstrip("\r\n")
    return text.startswith(("## TP-", "**", "- "))


def _core(span_lines: list[str]) -> str:
    return "\n".join(line.rstrip("\r\n") for line in span_lines if _ours(line))


def _heading_id(text: str) -> str:
    return text.split(":", 1)[0].rstrip("\r\n")


def _update_in_place(lines: list[str], spans: list[Any], rendered: list[str]) -> str:
    """Keep each entry whose rendered lines are unchanged; put the others where their
    earlier version stood (or after the entry that precedes them)."""
    kept: dict[int, int] = {}  # span index -> rendered index it already shows
    for si, span in enumerate(spans):
        core = _core(lines[span.start : span.end])
        match = next((ri for ri, text in enumerate(rendered) if ri not in kept.values() and text == core), None)
        if match is not None:
            kept[si] = match
    stale = [si for si in range(len(spans)) if si not in kept]
    placed_at: dict[int, int] = {ri: si for si, ri in kept.items()}
    groups: dict[int, list[str]] = {si: [] for si in range(len(spans))}  # replaces a stale span
    after: dict[int, list[str]] = {si: [] for si in range(len(spans))}  # follows a span
    before_first: list[str] = []
    for ri, text in enumerate(rendered):
        if ri in placed_at:
            continue
        same_id = [si for si in stale if _heading_id(spans[si].heading) == _heading_id(text)]
        if same_id:
            placed_at[ri] = same_id[0]
            groups[same_id[0]].append(text)
        elif ri > 0:
            placed_at[ri] = placed_at[ri - 1]
            after[placed_at[ri]].append(text)
        else:
            before_first.append(text)

    out: list[str] = lines[: spans[0].start]
    out += [t + "\n\n" for t in before_first]
    position = spans[0].start
    for si, span in enumerate(spans):
        out += lines[position : span.start]  # anything between entries that is not an entry
        body = lines[span.start : span.end]
        if si in kept:
            if not body[-1].endswith("\n"):
                body[-1] += "\n"
            out += body if body[-1].strip() == "" or not after[si] else [*body, "\n"]
        else:
            out += [t + "\n\n" for t in groups[si]]
            notes = [line for line in body[1:] if not _ours(line)]
            while notes and not notes[0].strip():
                notes.pop(0)
            out += notes
            if notes and notes[-1].strip():
                out[-1] = out[-1] if out[-1].endswith("\n") else out[-1] + "\n"
                out.append("\n")
        out += [t + "\n\n" for t in after[si]]
        position = span.end
    rest = lines[position:]
    text = "".join(out)
    if not rest and not (spans[-1] and len(spans) - 1 in kept and not after[len(spans) - 1]):
        text = text.rstrip("\n") + "\n"  # the file ends with an entry we wrote: one newline
    return text + "".join(rest)

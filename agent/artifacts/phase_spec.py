"""phase-2-training/spec.md: the seed's section 9 template, filled from the decisions.

Every section of the template is always present, in the template's order; an open
decision shows as "*Not decided yet*" because the writer also runs mid-revisit.
"""

from __future__ import annotations

from typing import Any, Callable

from agent.artifacts.common import (
    APPROACH_LABELS,
    METHOD_LABELS,
    NOT_DECIDED,
    approach_of,
    decision_heading_id,
    fields_of,
    fmt_count,
    fmt_num,
    fmt_params,
    quality_list,
    uses_dpo,
    uses_sft,
)
from agent.artifacts.markdown import cell, code, inline
from agent.redact import redact_text
from agent.state import DECISION_IDS, SECTION_TITLES, SECTIONS

TOP_ITEMS = 3  # items named per knowledge query; the rest are in the state's record

EXIT_CRITERIA: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Base model selected", ("base_model",)),
    ("Training approach defined", ("training_approach",)),
    ("Data requirements documented", ("training_data",)),
    ("Hyperparameters configured", ("peft", "hyperparameters")),
    ("Infrastructure planned", ("infrastructure",)),
    # The template has no placeholder left only once every decision is made.
    ("Templates generated", SECTIONS),
)

Decisions = dict[str, dict[str, Any]]


def _rationale(decisions: Decisions, section: str) -> str:
    return f"**Rationale:** {inline(decisions[section].get('rationale', ''))}"


def _section(title: str, decisions: Decisions, section: str, body: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    f = fields_of(decisions, section)
    return [f"## {title}", "", *(body(f) if f is not None else [NOT_DECIDED]), ""]


def _objective(project: dict[str, Any]) -> list[str]:
    lines = ["## Objective", "Design the training pipeline for fine-tuning the base model to project requirements.", ""]
    labels = (("name", "Project"), ("architecture", "Architecture"))
    about = [f"**{label}:** {inline(project[key])}" for key, label in labels if project.get(key)]
    return lines + (about + [""] if about else [])


def _query_ref(record: dict[str, Any]) -> str:
    if record.get("ref"):
        return str(record["ref"])
    args = record.get("arguments") or {}
    return f"{record.get('endpoint', '?')}:{args.get('topic') or args.get('query') or ''}"


def _item(item: dict[str, Any]) -> str:
    title = inline(item.get("title") or "")
    source = f" ({inline(item['source_title'])})" if item.get("source_title") else ""
    return f"{code(item.get('id', '?'))} {title}{source}"


def _knowledge_line(record: dict[str, Any], attempts: int = 1) -> str:
    parts = [code(_query_ref(record))]
    if record.get("section") in SECTION_TITLES:
        parts[0] += f" (for {SECTION_TITLES[record['section']]})"
    if attempts > 1:
        parts[0] += f" ({attempts} attempts)"
    if record.get("error"):
        parts.append(f"**could not be consulted:** {inline(redact_text(record['error']))}")
    fallback = record.get("fallback")
    if fallback:
        # The seed's own call came back empty; say which query answered instead.
        used = code(fallback) if isinstance(fallback, str) else "another query"
        parts.append(f"**answered via fallback:** {used}")
    # Items without text (saved before such items were skipped) are not cited.
    items = [i for i in record.get("items") or [] if (i.get("title") or "").strip()]
    if items:
        parts.append("top items: " + "; ".join(_item(i) for i in items[:TOP_ITEMS]))
    elif not record.get("error"):
        parts.append("no matching items")
    return "- " + " - ".join(parts)


def _latest_per_query(knowledge: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Each query once, where it first ran: its latest record and how many times it ran."""
    latest: dict[str, dict[str, Any]] = {}
    runs: dict[str, int] = {}
    for i, rec in enumerate(knowledge):
        key = str(rec.get("query_id") or f"#{i}")
        latest[key] = rec
        runs[key] = runs.get(key, 0) + 1
    return [(rec, runs[key]) for key, rec in latest.items()]


def _knowledge(knowledge: list[dict[str, Any]]) -> list[str]:
    lines = ["## Knowledge Consulted"]
    if not knowledge:
        return lines + ["*No knowledge queries were made.*", ""]
    queries = _latest_per_query(knowledge)
    lines += [_knowledge_line(r, n) for r, n in queries]
    failed = sum(1 for r, _ in queries if r.get("error"))
    if failed:
        lines += ["", f"*{failed} of {len(queries)} queries could not be consulted.*"]
    return lines + [""]


def _base_model(decisions: Decisions) -> list[str]:
    def body(f: dict[str, Any]) -> list[str]:
        return [
            f"**Model:** {inline(f.get('name', ''))} (revision {code(f.get('revision', 'main'))})",
            f"**Size:** {fmt_params(f.get('params_b'))} parameters",
            f"**License:** {inline(f.get('license', ''))}",
            f"**Context Length:** {fmt_count(f.get('context_length'))} tokens",
            _rationale(decisions, "base_model"),
        ]

    return _section("Base Model", decisions, "base_model", body)


def _training_approach(decisions: Decisions) -> list[str]:
    approach = approach_of(decisions)
    data = fields_of(decisions, "training_data")
    hp = fields_of(decisions, "hyperparameters")

    def data_value(key: str, fmt: Callable[[Any], str]) -> str:
        return NOT_DECIDED if data is None else fmt(data.get(key))

    def body(f: dict[str, Any]) -> list[str]:
        primary = APPROACH_LABELS.get(approach, inline(approach or ""))
        lines = [f"**Primary:** {primary}", _rationale(decisions, "training_approach")]
        if uses_sft(approach):
            lines += [
                "",
                "### SFT Configuration",
                "- Data format: instruction-response pairs",
                f"- Examples: {data_value('sft_examples', fmt_count)}",
                f"- Quality verification: {data_value('quality_checks', lambda v: inline(quality_list(v)))}",
            ]
        if uses_dpo(approach):
            if hp is None:
                beta, reference = NOT_DECIDED, NOT_DECIDED
            else:
                beta = fmt_num(hp.get("dpo_beta"))
                ref_free = hp.get("reference_free")
                reference = (
                    "not set" if ref_free is None
                    else "none (reference-free variant)" if ref_free
                    else "frozen copy of the starting model"
                )
            lines += [
                "",
                "### DPO Configuration",
                "- Data format: prompt + chosen + rejected",
                f"- Preference pairs: {data_value('dpo_pairs', fmt_count)}",
                f"- Source: {data_value('source', inline)}",
                f"- Beta: {beta}",
                f"- Reference model: {reference}",
            ]
        return lines

    return _section("Training Approach", decisions, "training_approach", body)


def _training_data(decisions: Decisions) -> list[str]:
    def body(f: dict[str, Any]) -> list[str]:
        lines = [f"**Source:** {inline(f.get('source', ''))}"]
        if f.get("sft_examples") is not None:
            lines.append(f"**Instruction-response pairs:** {fmt_count(f['sft_examples'])}")
        if f.get("dpo_pairs") is not None:
            lines.append(f"**Preference pairs:** {fmt_count(f['dpo_pairs'])}")
        split = f.get("eval_split")
        lines += [
            f"**Quality checks:** {inline(quality_list(f.get('quality_checks')))}",
            f"**Evaluation split:** {'not set' if split is None else f'{split * 100:g}% held out'}",
            f"**Train path:** {code(f.get('train_path', ''))}",
            f"**Eval path:** {code(f.get('eval_path', ''))}",
            _rationale(decisions, "training_data"),
        ]
        return lines

    return _section("Training Data", decisions, "training_data", body)


def _peft(decisions: Decisions) -> list[str]:
    def body(f: dict[str, Any]) -> list[str]:
        method = f.get("method")
        lines = [f"**Method:** {METHOD_LABELS.get(method, inline(method or ''))}", "**Configuration:**"]
        if method == "full":
            lines.append("- All weights are trained; no LoRA rank, alpha or target modules")
        else:
            modules = ", ".join(code(m) for m in f.get("target_modules") or []) or "none"
            lines += [
                f"- Rank: {fmt_num(f.get('r'))}",
                f"- Alpha: {fmt_num(f.get('alpha'))}",
                f"- Dropout: {fmt_num(f.get('dropout'))}",
                f"- Target modules: {modules}",
            ]
        lines += [f"- Quantization: {inline(f.get('quantization', 'none'))}", _rationale(decisions, "peft")]
        return lines

    return _section("Parameter-Efficient Training", decisions, "peft", body)


def _hyperparameters(decisions: Decisions) -> list[str]:
    approach = approach_of(decisions)
    base = fields_of(decisions, "base_model")

    def body(f: dict[str, Any]) -> list[str]:
        batch, accum = f.get("batch_size"), f.get("gradient_accumulation_steps") or 1
        effective = f"Effective batch size {batch * accum}" if isinstance(batch, int) else "-"
        context = f"Base model context is {fmt_count(base.get('context_length'))} tokens" if base else "-"
        rows = [
            ("Learning Rate", fmt_num(f.get("learning_rate")), cell(decisions["hyperparameters"].get("rationale", ""))),
            ("Batch Size", fmt_num(batch), f"Per device; {effective.lower()}" if batch else "-"),
            ("Epochs", fmt_num(f.get("num_epochs")), f"Budget: {cell(f['budget'])}" if f.get("budget") else "-"),
            ("Gradient Accumulation Steps", fmt_num(accum), effective),
            ("Warmup Ratio", fmt_num(f.get("warmup_ratio")), "Fraction of training steps"),
            ("Weight Decay", fmt_num(f.get("weight_decay")), "-"),
            ("Max Length", fmt_num(f.get("max_length")), context),
        ]
        if uses_dpo(approach):
            rows.append(("DPO Beta", fmt_num(f.get("dpo_beta")), "KL penalty towards the reference model"))
        return [
            "| Parameter | Value | Rationale |",
            "|-----------|-------|-----------|",
            *(f"| {p} | {v} | {r} |" for p, v, r in rows),
        ]

    return _section("Hyperparameters", decisions, "hyperparameters", body)


def _estimate(estimate_summary: str | None) -> list[str]:
    if not estimate_summary or not estimate_summary.strip():
        return []
    # A quote keeps the estimate's own lines without letting them open new sections.
    return ["", *(f"> {line}".rstrip() for line in estimate_summary.strip().splitlines()), ""]


def _infrastructure(decisions: Decisions, estimate_summary: str | None) -> list[str]:
    f = fields_of(decisions, "infrastructure")
    estimate = _estimate(estimate_summary)
    if f is None:
        # The estimate can exist before this decision (it needs the model and PEFT method).
        return ["## Infrastructure", "", NOT_DECIDED, *(estimate or [""])]
    gpus = f.get("gpu_count") or 1
    compute = f"{inline(f.get('platform', ''))}, {inline(f.get('instance_type', ''))}"
    compute += f" x {gpus}" if gpus > 1 else ""
    compute += " (spot instances)" if f.get("spot_instances") else ""
    if f.get("estimated_cost"):
        cost = inline(f["estimated_cost"])
    else:
        cost = "see the estimate below" if estimate else "*Not estimated yet*"
    return [
        "## Infrastructure",
        "",
        f"**Compute:** {compute}",
        f"**Tracking:** {inline(f.get('tracking_tool', ''))} (project {code(f.get('project', ''))},"
        f" experiment {code(f.get('experiment', ''))})",
        f"**Estimated Cost:** {cost}",
        *estimate,
        _rationale(decisions, "infrastructure"),
        "",
    ]


def _decisions_made(decisions: Decisions) -> list[str]:
    lines = ["## Decisions Made", "", "| ID | Decision | Rationale |", "|----|----------|-----------|"]
    for section in SECTIONS:
        d = decisions.get(section)
        title = SECTION_TITLES[section]
        if d:
            row = (decision_heading_id(d), f"{cell(title)}: {cell(d.get('choice', ''))}", cell(d.get("rationale", "")))
        else:
            row = (DECISION_IDS[section].upper(), f"{cell(title)}: {NOT_DECIDED}", "-")
        lines.append("| {} | {} | {} |".format(*row))
    return lines + [""]


def _pitfalls(pitfalls: list[dict[str, Any]] | None) -> list[str]:
    lines = ["## Pitfalls Checked", ""]
    if pitfalls is None:
        return lines + ["*Not checked yet*", ""]
    if not pitfalls:
        return lines + ["No pitfalls found in the current decisions.", ""]
    for p in pitfalls:
        where = f" ({SECTION_TITLES[p['section']]})" if p.get("section") in SECTION_TITLES else ""
        text = f"- **{inline(p.get('severity', 'note'))}**{where}: {inline(p.get('message', ''))}"
        if p.get("fix"):
            text += f" Fix: {inline(p['fix'])}"
        if p.get("knowledge_ref"):
            text += f" (knowledge: {code(p['knowledge_ref'])})"
        lines.append(text)
    return lines + [""]


def _exit_criteria(decisions: Decisions, preflight: tuple[str, str] | None = None) -> list[str]:
    lines = ["## Exit Criteria"]
    for label, needs in EXIT_CRITERIA:
        done = all(decisions.get(s) for s in needs)
        lines.append(f"- [{'x' if done else ' '}] {label}")
    if preflight is not None:
        # (status, line) of the last pre-flight run of these decisions: only "passed" checks the box.
        status, line = preflight
        box = "" if status == "not run" else f"[{'x' if status == 'passed' else ' '}] "  # optional until it is run
        lines.append(f"- {box}{inline(line)}")
    return lines


def render_phase_spec(
    decisions: Decisions,
    knowledge: list[dict[str, Any]],
    project: dict[str, Any],
    pitfalls: list[dict[str, Any]] | None = None,
    estimate_summary: str | None = None,
    preflight: tuple[str, str] | None = None,
) -> str:
    lines = [
        "# Phase 2: Training Pipeline Spec",
        "",
        *_objective(project),
        *_knowledge(knowledge),
        *_base_model(decisions),
        *_training_approach(decisions),
        *_training_data(decisions),
        *_peft(decisions),
        *_hyperparameters(decisions),
        *_infrastructure(decisions, estimate_summary),
        *_decisions_made(decisions),
        *_pitfalls(pitfalls),
        *_exit_criteria(decisions, preflight),
    ]
    return "\n".join(lines) + "\n"
